"""asyncio: awaited coroutine chains, gather, an async generator, async with, a cancelled task."""

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType

log: list[str] = []


async def leaf(i: int) -> int:
    await asyncio.sleep(0)
    return i * 2


async def middle(i: int) -> int:
    first = await leaf(i)
    second = await leaf(i + 1)
    return first + second


async def ticker(count: int) -> AsyncIterator[int]:
    for i in range(count):
        await asyncio.sleep(0)
        yield i


async def consume() -> int:
    total = 0
    async for value in ticker(5):
        total += value
    return total


class AsyncResource:
    async def __aenter__(self) -> "AsyncResource":
        await asyncio.sleep(0)
        log.append("enter")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        log.append("exit")


async def use_resource() -> None:
    async with AsyncResource():
        await asyncio.sleep(0.01)


def on_cancel() -> None:
    log.append("cancelled")


async def sleeper() -> None:
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        on_cancel()
        raise


async def cancel_one() -> str:
    task = asyncio.create_task(sleeper())
    await asyncio.sleep(0)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return "cancelled"
    return "finished"


async def main() -> None:
    results = await asyncio.gather(*(middle(i) for i in range(5)))
    total = await consume()
    await use_resource()
    outcome = await cancel_one()
    print(results, total, outcome, log)


if __name__ == "__main__":
    asyncio.run(main())
