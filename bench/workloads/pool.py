"""A multiprocessing.Pool of 4 workers mapping a call-heavy task (small functions, a dict, a
sort) over 64 items.  `pool.py [fork|spawn|forkserver]` (default: fork).  Times the whole Pool:
its start (the workers' start-up), the work and its end.
"""

import multiprocessing
import sys
import time

WORKERS = 4
ITEMS = 64
ROUNDS = 2_000


def key_of(n: int) -> str:
    return f"k{n % 97}"


def step(table: dict[str, int], n: int) -> int:
    k = key_of(n)
    table[k] = table.get(k, 0) + n
    return table[k] & 0xFFFF


def task(seed: int) -> int:
    table: dict[str, int] = {}
    acc = seed
    for i in range(ROUNDS):
        acc = (acc * 31 + step(table, i + seed)) % 1_000_003
    return acc + sum(sorted(table.values())[:5])


def main() -> None:
    method = sys.argv[1] if len(sys.argv) > 1 else "fork"
    t0 = time.perf_counter()
    with multiprocessing.get_context(method).Pool(WORKERS) as pool:
        total = sum(pool.map(task, range(ITEMS), chunksize=1))
    elapsed = time.perf_counter() - t0
    print(f"BENCH_CHECK={total}", file=sys.stderr)
    print(f"BENCH_SECONDS={elapsed:.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
