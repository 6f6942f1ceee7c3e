"""Generators abandoned mid-way: closed, dropped, left by a `break`, delegated to, never started."""

import gc
from collections.abc import Generator

closed: list[str] = []


def on_close(name: str) -> None:
    closed.append(name)


def guarded(name: str, limit: int) -> Generator[int, None, None]:
    try:
        for i in range(limit):  # noqa: UP028
            yield i
    finally:
        on_close(name)


def plain(limit: int) -> Generator[int, None, None]:
    for i in range(limit):  # noqa: UP028
        yield i


def delegating(limit: int) -> Generator[int, None, None]:
    yield from guarded("delegated", limit)


def swallowing() -> Generator[int, None, None]:
    try:
        yield 1
        yield 2
    except GeneratorExit:
        on_close("swallowing")


def take(gen: Generator[int, None, None], count: int) -> list[int]:
    return [next(gen) for _ in range(count)]


def main() -> None:
    first = guarded("explicit", 100)
    print(take(first, 3))
    first.close()

    second = guarded("dropped", 100)
    print(take(second, 5))
    del second

    for value in plain(10):
        if value == 4:
            break
    print("broke at", value)

    third = plain(10)
    print(take(third, 2))
    third.close()

    fourth = delegating(50)
    print(take(fourth, 3))
    fourth.close()

    fifth = swallowing()
    print(next(fifth))
    fifth.close()

    never = guarded("never", 10)
    never.close()

    gc.collect()
    print(closed)


if __name__ == "__main__":
    main()
