"""An asyncio program with an idle agent: `python -m ulma.agent attach_tasks_target.py STOPFILE`.

Its task `ticker` wakes every 2 ms until STOPFILE exists, counting its wakeups; then the program
prints how many it made and exits with 3."""

import asyncio
import os
import sys


async def ticker(stop: str) -> int:
    wakeups = 0
    while not os.path.exists(stop):
        await asyncio.sleep(0.002)
        wakeups += 1
    return wakeups


async def main(stop: str) -> None:
    wakeups = await asyncio.create_task(ticker(stop), name="ticker")
    print(f"wakeups={wakeups}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
    sys.exit(3)
