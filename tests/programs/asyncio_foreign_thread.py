"""asyncio run from a thread Python did not make (foreign_thread.c, built
as the shared object given as argv[1]): the thread calls back into Python
CALLS times, each call with a new thread state, and each call runs its own
event loop with three named tasks awaiting twice.  Prints one JSON line:
{task name: awaits that suspended it}."""

import asyncio
import ctypes
import json
import sys

CALLS = 3
AWAITS: dict[str, int] = {}


async def napper(name: str) -> None:
    for _ in range(2):
        await asyncio.sleep(0.002)
        AWAITS[name] = AWAITS.get(name, 0) + 1


async def main(call: int) -> None:
    await asyncio.gather(*(asyncio.create_task(napper(f"call{call}-{i}"), name=f"call{call}-{i}")
                           for i in range(3)))


def in_foreign_thread(call: int) -> None:
    asyncio.run(main(call))


CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_int)(in_foreign_thread)


if __name__ == "__main__":
    lib = ctypes.CDLL(sys.argv[1])
    lib.call_from_foreign_thread.argtypes = [ctypes.c_void_p, ctypes.c_int]
    if lib.call_from_foreign_thread(ctypes.cast(CALLBACK, ctypes.c_void_p), CALLS) != 0:
        sys.exit("pthread_create failed")
    print(json.dumps(AWAITS))
