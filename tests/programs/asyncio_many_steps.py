"""Many asyncio tasks stepping fast: each of TASKS tasks (`hopper-N`) awaits
`hop()` (which awaits sleep(0)) ROUNDS times, so the loop runs thousands of
short steps back to back -- enough to overflow a tiny ring again and again.
Prints one JSON line: {task name: awaits that suspended it}."""

import asyncio
import json

TASKS, ROUNDS = 200, 40
AWAITS: dict[str, int] = {}


async def hop() -> None:
    await asyncio.sleep(0)


async def hopper(name: str) -> None:
    for _ in range(ROUNDS):
        await hop()
        AWAITS[name] = AWAITS.get(name, 0) + 1


async def main() -> None:
    await asyncio.gather(*(asyncio.create_task(hopper(f"hopper-{i}"), name=f"hopper-{i}")
                           for i in range(TASKS)))


if __name__ == "__main__":
    asyncio.run(main())
    print(json.dumps(AWAITS))
