"""Four GIL-bound threads calling the same functions and methods, with a shared,
lock-protected tally they touch now and then (so the threads really interleave).
"""

import sys
import threading
import time

THREADS = 4
TASKS_PER_THREAD = 12_000


class Tally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, key: str, amount: int) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + amount

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


class Shape:
    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height

    def area(self) -> int:
        return self.width * self.height

    def scaled(self, factor: int) -> "Shape":
        return Shape(self.width * factor, self.height * factor)


def collatz_steps(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def tree_sum(depth: int, seed: int) -> int:
    if depth == 0:
        return seed % 17
    return tree_sum(depth - 1, seed * 3 + 1) + tree_sum(depth - 1, seed * 5 + 2)


def word_score(word: str) -> int:
    return sum(ord(c) - 96 for c in word)


WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


def task(worker: int, n: int, tally: Tally) -> int:
    shape = Shape(n % 13 + 1, worker + 2).scaled(2)
    value = shape.area() + collatz_steps(n + 1) + tree_sum(5, n + worker)
    value += word_score(WORDS[(n + worker) % len(WORDS)])
    if n % 64 == 0:
        tally.add(WORDS[worker], value)
    return value


def worker_loop(worker: int, tally: Tally, results: list[int]) -> None:
    total = 0
    for n in range(TASKS_PER_THREAD):
        total += task(worker, n, tally)
    results[worker] = total


def main() -> None:
    tally = Tally()
    results = [0] * THREADS
    threads = [
        threading.Thread(target=worker_loop, args=(w, tally, results), name=f"worker-{w}")
        for w in range(THREADS)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    print(f"BENCH_CHECK={sum(results)}:{tally.total()}", file=sys.stderr)
    print(f"BENCH_SECONDS={elapsed:.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
