"""Four threads calling the same functions at the same time."""

import threading
from collections.abc import Iterator

N_THREADS = 4
barrier = threading.Barrier(N_THREADS)


class Counter:
    def __init__(self) -> None:
        self.total = 0

    def add(self, value: int) -> None:
        self.total += value


def square(x: int) -> int:
    return x * x


def evens(limit: int) -> Iterator[int]:
    for i in range(limit):
        if i % 2 == 0:
            yield i


def work(index: int, results: list[int]) -> None:
    barrier.wait()
    counter = Counter()
    for value in evens(2_000 + index):
        counter.add(square(value))
    results[index] = counter.total


def main() -> None:
    results = [0] * N_THREADS
    threads = [threading.Thread(target=work, args=(i, results)) for i in range(N_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(results)


if __name__ == "__main__":
    main()
