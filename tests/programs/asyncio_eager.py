"""3.12's eager tasks: with asyncio.eager_task_factory a task runs its first
step inside create_task(), called from its creator's coroutine.  `quick`
finishes there and then (one step); `napper` awaits sleep twice (three
steps, the first eager); `plain` is made with the loop's own create_task
under a factory that is not eager (for comparison).  Prints one JSON line:
{task name: awaits that suspended it}."""

import asyncio
import json

AWAITS: dict[str, int] = {}


async def quick() -> int:
    AWAITS[asyncio.current_task().get_name()] = 0  # type: ignore[union-attr]
    return 1


async def napper() -> None:
    name = asyncio.current_task().get_name()  # type: ignore[union-attr]
    AWAITS[name] = 0
    for _ in range(2):
        await asyncio.sleep(0.001)
        AWAITS[name] += 1


async def main() -> None:
    loop = asyncio.get_running_loop()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    done = asyncio.create_task(quick(), name="quick")
    napping = asyncio.create_task(napper(), name="napper")
    assert done.done()  # it finished inside create_task
    await asyncio.gather(done, napping)
    loop.set_task_factory(None)
    await asyncio.create_task(napper(), name="plain")


if __name__ == "__main__":
    asyncio.run(main())
    print(json.dumps(AWAITS))
