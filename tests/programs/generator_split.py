"""Known splits of calls and resumes: generators and coroutines are called once and resumed per step.

count_up(3) consumed to the end, ten times: 10 calls, 30 resumes (cProfile: 40 calls).
closed_early() started, then closed at its first yield inside try/finally: 1 call, 1 resume (the throw).
ticks() awaited by asyncio.run: 1 call, 2 resumes (after each `await asyncio.sleep(0)`).
"""

import asyncio
from collections.abc import Generator, Iterator


def count_up(limit: int) -> Iterator[int]:
    for i in range(limit):  # noqa: UP028
        yield i


def closed_early() -> Generator[int, None, None]:
    try:
        yield 1
        yield 2
    finally:
        pass


async def ticks() -> int:
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return 2


def main() -> None:
    print(sum(sum(count_up(3)) for _ in range(10)))
    gen = closed_early()
    print(next(gen))
    gen.close()
    print(asyncio.run(ticks()))


if __name__ == "__main__":
    main()
