"""Run a workload script under another profiler so its tracing cost can be compared with ulma's.

    python profwrap.py {cprofile,yappi,viztracer} script.py [args...]

The script runs as ``__main__`` with the ``sys.argv`` and ``sys.path[0]`` that ``python script.py``
would give it. Only the profiler's tracing is measured: nothing is printed or dumped afterwards,
because the workload times itself and a dump would only cost time outside that window anyway.
"""

import cProfile
import importlib
import os
import runpy
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

Body = Callable[[], None]


def with_cprofile(body: Body) -> None:
    profiler = cProfile.Profile()
    # Before 3.12 cProfile sees only the thread that enabled it; give every new thread its own
    # profiler so the threaded workloads pay what a user profiling them would pay. From 3.12 on
    # it runs on sys.monitoring, which is interpreter-wide, so the one profiler sees all threads.
    per_thread = sys.version_info < (3, 12)
    if per_thread:
        threading.setprofile(_enable_cprofile_here)
    profiler.enable()
    try:
        body()
    finally:
        profiler.disable()
        if per_thread:
            threading.setprofile(None)


_thread_profilers: list[cProfile.Profile] = []  # kept alive so a thread's profiler is never collected mid-run


def _enable_cprofile_here(frame: FrameType, event: str, arg: object) -> None:
    """A one-shot profile hook: the thread's first event replaces it with a real cProfile."""
    profiler = cProfile.Profile()
    _thread_profilers.append(profiler)
    profiler.enable()


def with_yappi(body: Body) -> None:
    yappi: Any = importlib.import_module("yappi")
    yappi.set_clock_type("wall")
    yappi.start()
    try:
        body()
    finally:
        yappi.stop()


def with_viztracer(body: Body) -> None:
    viztracer: Any = importlib.import_module("viztracer")
    tracer = viztracer.VizTracer(verbose=0)
    tracer.start()
    try:
        body()
    finally:
        tracer.stop()  # no save(): its dump is not tracing overhead


TOOLS: dict[str, Callable[[Body], None]] = {
    "cprofile": with_cprofile,
    "yappi": with_yappi,
    "viztracer": with_viztracer,
}


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in TOOLS:
        sys.exit(f"usage: profwrap.py {{{','.join(TOOLS)}}} script.py [args...]")
    tool, script = TOOLS[sys.argv[1]], sys.argv[2]
    sys.argv = sys.argv[2:]
    sys.path[0] = os.path.dirname(os.path.abspath(script))

    def body() -> None:
        runpy.run_path(script, run_name="__main__")

    tool(body)


if __name__ == "__main__":
    main()
