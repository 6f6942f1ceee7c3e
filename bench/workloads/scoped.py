"""A program whose package `chosen` makes a tenth of the Python calls (`ulma run --only chosen`);
the rest are small calls of its own.  An argument, if given, is how many seconds to go on for
(bench/control.py's switch latency), else a fixed amount of work."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from chosen.work import Acc, chosen  # type: ignore[import-not-found]

ROUNDS = 60_000


def other(x: int) -> int:
    return x * 2


def busy(x: int) -> int:
    return other(x) + other(x + 1)


def step(acc: Acc, i: int) -> int:
    s = 0
    for j in range(16):
        s += busy(i + j) if j % 3 == 0 else other(j)
    chosen(acc, i)
    return s


def main() -> None:
    acc = Acc()
    s = 0
    start = time.perf_counter()
    cpu0 = time.thread_time()
    if len(sys.argv) > 1:
        end = start + float(sys.argv[1])
        i = 0
        while time.perf_counter() < end:
            s += step(acc, i)
            i += 1
    else:
        for i in range(ROUNDS):
            s += step(acc, i)
    elapsed = time.perf_counter() - start
    cpu = time.thread_time() - cpu0
    print(f"BENCH_CPU_SECONDS={cpu:.6f}", file=sys.stderr)
    print(f"BENCH_CHECK={acc.total}:{s}", file=sys.stderr)
    print(f"BENCH_SECONDS={elapsed:.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
