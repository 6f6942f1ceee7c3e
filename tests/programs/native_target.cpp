// A C++ program without Python, built with ulma's standalone runtime, for `ulma attach`: run with
// ULMA_LISTEN=1 it carries an idle runtime.  For each number K read on stdin it runs K job scopes
// (each computing fib(10) in fib scopes) and prints "done K" (flushed); at the end of stdin it
// exits 0.  Built by tests/integration/test_native_program.py.
#include <ulma/ulma.hpp>

#include <cstdio>

static long fib(int n) {
    ULMA_SCOPE("fib");
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

int main() {
    long k;
    while (std::scanf("%ld", &k) == 1) {
        long s = 0;
        for (long i = 0; i < k; i++) {
            ULMA_SCOPE("job");
            s += fib(10);
        }
        std::printf("done %ld %ld\n", k, s);
        std::fflush(stdout);
    }
    return 0;
}
