"""Coroutines that sleep while a CPU-bound coroutine runs, each measuring
what it did with its own clocks: every sleeper the wall time of its
`await asyncio.sleep(...)` (from just before the await to just after it),
the compute coroutine its thread's CPU time.  A chain `outer -> inner`
awaits a sleep through another coroutine.  Prints one JSON line:
{"awaited_ns": {name: [ns, ...]}, "computed_cpu_ns": ns}."""

import asyncio
import json
import time

AWAITED: dict[str, list[int]] = {"sleeper": [], "inner": []}


async def sleeper(seconds: float) -> None:
    t0 = time.perf_counter_ns()
    await asyncio.sleep(seconds)
    AWAITED["sleeper"].append(time.perf_counter_ns() - t0)


async def inner() -> None:
    t0 = time.perf_counter_ns()
    await asyncio.sleep(0.15)
    AWAITED["inner"].append(time.perf_counter_ns() - t0)


async def outer() -> None:
    await inner()


async def computes() -> int:
    """300 ms of this thread's CPU time, in steps that give the loop back."""
    spent, x = 0, 0
    while spent < 300_000_000:
        c0 = time.thread_time_ns()
        while time.thread_time_ns() - c0 < 10_000_000:
            x += 1
        spent += time.thread_time_ns() - c0
        await asyncio.sleep(0)
    return spent


async def main() -> None:
    results = await asyncio.gather(sleeper(0.4), sleeper(0.25), outer(), computes())
    print(json.dumps({"awaited_ns": AWAITED, "computed_cpu_ns": results[-1]}))


asyncio.run(main())
