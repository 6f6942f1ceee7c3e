"""Holds the event loop 150 ms early, then runs on (awaiting) for 1.5 s: a
--jsonl line written meanwhile must already flag it."""

import asyncio
import time


def holds_the_loop() -> None:
    time.sleep(0.15)


async def main() -> None:
    await asyncio.sleep(0.05)
    holds_the_loop()
    await asyncio.sleep(1.5)


asyncio.run(main())
