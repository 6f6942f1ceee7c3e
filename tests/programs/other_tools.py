"""A program that profiles and watches itself: cProfile, sys.setprofile (in its main thread and, through
threading.setprofile, in a thread), and on 3.12+ its own sys.monitoring tools at the ids the standard tools
expect (DEBUGGER_ID, COVERAGE_ID, PROFILER_ID, OPTIMIZER_ID).

It prints what its own tools counted and what it called (`made leaf N, work M`), then exits with code 3.
Under ulma the output and exit code must be python's, and ulma's counts of leaf and work must be N and M.
"""

import cProfile
import pstats
import sys
import threading
from types import FrameType
from typing import Any

LEAF_PER_WORK = 50
made = {"leaf": 0, "work": 0}


def leaf(i: int) -> int:
    return len(str(i))  # a call into C too, for the native-calls modes


def work(n: int) -> int:
    made["work"] += 1
    made["leaf"] += n
    return sum(leaf(i) for i in range(n))


def with_cprofile() -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(20):
        work(LEAF_PER_WORK)
    profiler.disable()
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    mine = {name: nc for (file, _line, name), (_cc, nc, *_r) in stats.items() if file == __file__}
    print("cProfile:", sorted(mine.items()))


class Counter:
    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename == __file__:
            name = frame.f_code.co_name
            self.calls[name] = self.calls.get(name, 0) + 1


def with_setprofile() -> None:
    counter = Counter()
    sys.setprofile(counter)
    for _ in range(10):
        work(LEAF_PER_WORK)
    sys.setprofile(None)
    print("setprofile:", sorted(counter.calls.items()))


def with_thread_setprofile() -> None:
    counter = Counter()
    threading.setprofile(counter)
    t = threading.Thread(target=lambda: [work(LEAF_PER_WORK) for _ in range(10)])
    t.start()
    t.join()
    threading.setprofile(None)
    print("thread setprofile:", sorted((k, v) for k, v in counter.calls.items() if k != "<lambda>"))


def with_monitoring_tools() -> None:
    mon = sys.monitoring  # type: ignore[attr-defined]
    ids = {"debugger": mon.DEBUGGER_ID, "coverage": mon.COVERAGE_ID, "profiler": mon.PROFILER_ID,
           "optimizer": mon.OPTIMIZER_ID}
    counts = dict.fromkeys(ids, 0)
    for name, tool in ids.items():
        mon.use_tool_id(tool, f"own {name}")

        def on_start(code: Any, offset: int, name: str = name) -> None:
            if code is leaf.__code__:
                counts[name] += 1

        mon.register_callback(tool, mon.events.PY_START, on_start)
        mon.set_events(tool, mon.events.PY_START)
    for _ in range(5):
        work(LEAF_PER_WORK)
    for tool in ids.values():
        mon.set_events(tool, 0)
        mon.free_tool_id(tool)
    print("monitoring tools:", sorted(counts.items()))


def main() -> None:
    with_cprofile()
    with_setprofile()
    with_thread_setprofile()
    if sys.version_info >= (3, 12):
        with_monitoring_tools()
    for _ in range(3):
        work(LEAF_PER_WORK)
    print(f"made leaf {made['leaf']}, work {made['work']}")
    sys.exit(3)


if __name__ == "__main__":
    main()
