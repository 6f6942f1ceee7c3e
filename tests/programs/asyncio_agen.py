"""Async generators, each measuring what it did with its own clock.  `ticks`
awaits asyncio.sleep before each value it yields: that time is waiting, its
own.  `values` yields values at once to a consumer that sleeps between
taking them: suspended at `yield`, it waits for nothing (a generator handing
out a value).  `stuck` awaits a long sleep and is cancelled in it (a throw
into its await); the program then sleeps on, so time still counted as
stuck's waiting after the throw would show.  Prints one JSON line:
{"awaited_ns": ns, "handed_ns": ns, "stuck_ns": ns}, the wall time of ticks'
awaits, of values' yields (from just before each to just after) and of
stuck's one await, to its cancellation."""

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

N = 6
PAUSE = 0.03
FACTS = {"awaited_ns": 0, "handed_ns": 0, "stuck_ns": 0}


async def ticks() -> AsyncIterator[int]:
    for i in range(N):
        t0 = time.perf_counter_ns()
        await asyncio.sleep(PAUSE)
        FACTS["awaited_ns"] += time.perf_counter_ns() - t0
        yield i


async def values() -> AsyncIterator[int]:
    for i in range(N):
        t0 = time.perf_counter_ns()
        yield i
        FACTS["handed_ns"] += time.perf_counter_ns() - t0


async def stuck() -> AsyncIterator[int]:
    t0 = time.perf_counter_ns()
    try:
        await asyncio.sleep(60)
    finally:
        FACTS["stuck_ns"] = time.perf_counter_ns() - t0
    yield 0


async def first(gen: AsyncIterator[int]) -> int:
    async for i in gen:
        return i
    return -1


async def main() -> None:
    got = [i async for i in ticks()]
    async for i in values():
        got.append(i)
        await asyncio.sleep(PAUSE)
    assert got == list(range(N)) * 2
    with contextlib.suppress(TimeoutError):  # asyncio's is this one from 3.11 on
        await asyncio.wait_for(first(stuck()), PAUSE)
    await asyncio.sleep(PAUSE * 5)
    print(json.dumps(FACTS))


asyncio.run(main())
