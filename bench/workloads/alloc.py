"""Allocation-heavy: objects made and dropped at a high rate -- small lists and dicts, strings,
instances of a class with __slots__ and one without, tuples -- with a few kept.  Prints
BENCH_SECONDS=, BENCH_CPU_SECONDS= and BENCH_CHECK= on stderr like the other workloads."""

import sys
import time


class Point:
    __slots__ = ("x", "y")

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y


class Record:
    def __init__(self, key: str, value: int) -> None:
        self.key = key
        self.value = value


def churn(n: int) -> int:
    kept: list[object] = []
    total = 0
    for i in range(n):
        p = Point(i, i + 1)
        r = Record(f"k{i % 977}", i)
        row: list[object] = [p.x, p.y, r.value]
        d: dict[str, list[object]] = {"a": row, "b": [i, r.key]}
        total += len(d["a"]) + len(d["b"])
        if i % 1000 == 0:
            kept.append(d)
    return total + len(kept)


def main() -> None:
    start = time.perf_counter()
    cpu0 = time.thread_time()
    result = churn(400_000)
    elapsed = time.perf_counter() - start
    print(f"BENCH_CHECK={result}", file=sys.stderr)
    print(f"BENCH_CPU_SECONDS={time.thread_time() - cpu0:.6f}", file=sys.stderr)
    print(f"BENCH_SECONDS={elapsed:.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
