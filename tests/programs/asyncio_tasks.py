"""asyncio tasks, each knowing what it did.  Two tasks run one coroutine
function (`worker`) under different names and pauses, so only telling tasks
apart (not coroutine functions) gives each its own figures; `crunch`
computes between `sleep(0)`s (its time is running, not waiting); `held`
waits on an Event the program sets only at its end (a task suspended now,
in Event.wait); one task keeps its default name (Task-N); `fails` raises.
Each task measures, with the loop's thread clock, the wall time of its
awaits (`awaited_ns`: from before each await to after it) and its life
(`life_ns`: from its first line to its last), and counts its awaits that
suspended it.  An await's window also holds the end of the step that
suspends and the start of the one that resumes (the task running); on a
busy machine the thread may be preempted there, for a time slice or more.
So each task also sums the windows in which its thread was not preempted
(`clean_ns`: no involuntary context switch, getrusage(RUSAGE_THREAD)), where
nearly all of the window is waiting.  Prints one JSON line: {name:
{"awaited_ns", "clean_ns", "life_ns", "awaits"}, ...} with the tasks' own
names (asyncio's get_name()).

With --hold S, `held` is set only after S seconds (for a live view); with --uvloop the tasks
run on uvloop's event loop."""

import asyncio
import contextlib
import json
import resource
import sys
import time

FACTS: dict[str, dict[str, int]] = {}


def me() -> dict[str, int]:
    task = asyncio.current_task()
    assert task is not None
    return FACTS.setdefault(task.get_name(), {"awaited_ns": 0, "clean_ns": 0, "life_ns": 0, "awaits": 0})


def preempted() -> int:
    """The thread's involuntary context switches so far."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw


def count_await(facts: dict[str, int], t0: int, switches: int) -> None:
    window = time.perf_counter_ns() - t0
    facts["awaited_ns"] += window
    if preempted() == switches:
        facts["clean_ns"] += window
    facts["awaits"] += 1


async def pause(seconds: float) -> None:
    facts = me()
    switches, t0 = preempted(), time.perf_counter_ns()
    await asyncio.sleep(seconds)
    count_await(facts, t0, switches)


async def worker(rounds: int, seconds: float) -> None:
    t0 = time.perf_counter_ns()
    for _ in range(rounds):
        await pause(seconds)
    me()["life_ns"] = time.perf_counter_ns() - t0


def spin(seconds: float) -> int:
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        n += 1
    return n


async def crunch(rounds: int) -> None:
    t0 = time.perf_counter_ns()
    for _ in range(rounds):
        spin(0.02)
        await pause(0)
    me()["life_ns"] = time.perf_counter_ns() - t0


async def held(event: asyncio.Event) -> None:
    t0 = time.perf_counter_ns()
    facts = me()
    switches, t1 = preempted(), time.perf_counter_ns()
    await event.wait()
    count_await(facts, t1, switches)
    facts["life_ns"] = time.perf_counter_ns() - t0


async def fails() -> None:
    t0 = time.perf_counter_ns()
    await pause(0.01)
    me()["life_ns"] = time.perf_counter_ns() - t0
    raise ValueError("on purpose")


async def main(hold: float) -> None:
    event = asyncio.Event()
    waiting = asyncio.create_task(held(event), name="held")
    tasks = [
        asyncio.create_task(worker(5, 0.01), name="worker-fast"),
        asyncio.create_task(worker(5, 0.06), name="worker-slow"),
        asyncio.create_task(crunch(6), name="crunch"),
        asyncio.create_task(worker(2, 0.02)),  # Task-N
    ]
    failing = asyncio.create_task(fails(), name="fails")
    await asyncio.gather(*tasks)
    with contextlib.suppress(ValueError):
        await failing
    await asyncio.sleep(hold)
    event.set()
    await waiting


if __name__ == "__main__":
    hold = float(sys.argv[sys.argv.index("--hold") + 1]) if "--hold" in sys.argv else 0.05
    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.run(main(hold))
    else:
        asyncio.run(main(hold))
    print(json.dumps(FACTS))
