"""Recursive fib: nearly all of its time is Python call overhead, the worst case for a tracer."""

import sys
import time

ROUNDS = 8
N = 29


def fib(n: int) -> int:
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def main() -> None:
    start = time.perf_counter()
    cpu0 = time.thread_time()
    total = 0
    for _ in range(ROUNDS):
        total += fib(N)
    elapsed = time.perf_counter() - start
    # The check lets the harness see that a profiler did not change the program's result.
    print(f"BENCH_CHECK={total}", file=sys.stderr)
    print(f"BENCH_CPU_SECONDS={time.thread_time() - cpu0:.6f}", file=sys.stderr)
    print(f"BENCH_SECONDS={elapsed:.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
