"""An event loop held on purpose: a coroutine that calls a blocking function
(120 ms), a plain callback that blocks (80 ms), and a coroutine that computes
only 10 ms before it awaits (under the 50 ms limit).  Prints what it did.
With --uvloop, on uvloop's event loop."""

import asyncio
import json
import sys
import time


def blocks_in_a_coroutine() -> None:
    time.sleep(0.12)


def blocking_callback() -> None:
    time.sleep(0.08)


async def stalls() -> None:
    await asyncio.sleep(0.01)
    blocks_in_a_coroutine()


async def brief() -> None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.01:
        pass
    await asyncio.sleep(0.01)


async def main() -> None:
    await asyncio.gather(stalls(), brief())
    asyncio.get_running_loop().call_soon(blocking_callback)
    await asyncio.sleep(0.15)
    print(json.dumps({"blocked": ["blocks_in_a_coroutine", "blocking_callback"]}))


if "--uvloop" in sys.argv:
    import uvloop

    uvloop.run(main())
else:
    asyncio.run(main())
