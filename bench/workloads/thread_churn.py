"""Thread start and end: 3 000 short threads one after another (each makes a
few calls, then ends), then 300 at once that wait for each other.  Under a
tracer each thread's start claims a ring and states its stack, and its end
hands the ring back: this is what that costs.
"""

import sys
import threading
import time

SEQUENTIAL = 3_000
TOGETHER = 300


def leaf(n: int) -> int:
    return n * 2 + 1


def short_life(results: list[int], index: int) -> None:
    results[index] = sum(leaf(i) for i in range(5))


def together(barrier: threading.Barrier, results: list[int], index: int) -> None:
    barrier.wait()
    results[index] = leaf(index)


def main() -> None:
    start = time.perf_counter()
    seq = [0] * SEQUENTIAL
    for i in range(SEQUENTIAL):
        t = threading.Thread(target=short_life, args=(seq, i))
        t.start()
        t.join()
    both = [0] * TOGETHER
    barrier = threading.Barrier(TOGETHER)
    threads = [threading.Thread(target=together, args=(barrier, both, i)) for i in range(TOGETHER)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    print(f"BENCH_CHECK={sum(seq)}:{sum(both)}", file=sys.stderr)
    print(f"BENCH_SECONDS={elapsed:.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
