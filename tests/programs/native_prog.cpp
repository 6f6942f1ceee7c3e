// A C++ program without Python that reports its scopes through ulma's header and its standalone
// runtime (ulma/ulma_runtime.c, linked in): built by tests/integration/test_native_program.py.
// `native_prog ROUNDS`: main_work runs fib(15) ROUNDS times; a std::thread runs worker, with 100
// job scopes each computing fib(10); a mark and a counter at the end.  It prints the number of
// fib scopes it entered (its own count: the ground truth), and exits 7.
#include <ulma/ulma.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>

static std::atomic<long> entered{0};

static long fib(int n) {
    ULMA_SCOPE("fib");
    entered.fetch_add(1, std::memory_order_relaxed);
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

static void worker() {
    ULMA_SCOPE("worker");
    for (int i = 0; i < 100; i++) {
        ULMA_SCOPE("job");
        fib(10);
    }
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? std::atoi(argv[1]) : 50;
    std::thread t(worker);
    long s = 0;
    {
        ULMA_SCOPE("main_work");
        for (int i = 0; i < rounds; i++)
            s += fib(15);
    }
    t.join();
    ULMA_MARK("done");
    ULMA_COUNTER("sum", s);
    std::printf("%ld %ld\n", entered.load(), s);
    return 7;
}
