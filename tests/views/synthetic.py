"""A made-up run with fixed figures, for pictures of the views that must not change between runs.

No program runs: `FakeSource` is a LiveSource whose snapshots are fixed.  Everything that varies
from one run to the next in a real one is fixed here: the clock (health.at_ns and elapsed), the
calls per second (the second snapshot is one second after the first), the paths (the working
directory is made up; the standard library's and site-packages' folders are this Python's, which
the views show as `<stdlib>/...` and `package/...`, the same on every Python)."""

from __future__ import annotations

import sysconfig
import threading
from typing import Any, cast

from ulma.monitor.live import Health, LiveSource, Snapshot
from ulma.monitor.profile import FunctionStats, Profile, ThreadInfo

CWD = "/home/user/project"
STDLIB = sysconfig.get_paths()["stdlib"]
PACKAGES = sysconfig.get_paths()["purelib"]
MS = 1_000_000
WALL_NS = 2_000 * MS
LONG_NAME = "ReportRenderingPipeline.render_the_function_table_for_width"  # 59 characters

# (name, file, line, calls, resumes, self ms, total ms, share of total: cpu, overhead, waiting, unmeasured)
FUNCTIONS: tuple[tuple[str, str, int, int, int, float, float, tuple[float, float, float, float]], ...] = (
    ("crunch", f"{CWD}/app/compute.py", 12, 4, 0, 2_900, 2_900, (0.96, 0.04, 0.0, 0.0)),  # 4 threads
    ("Event.wait", f"{STDLIB}/threading.py", 629, 3, 0, 1_500, 1_500, (0.01, 0.0, 0.99, 0.0)),
    ("Session.request", f"{PACKAGES}/requests/sessions.py", 500, 40, 0, 320, 900, (0.3, 0.05, 0.65, 0.0)),
    ("JSONDecoder.raw_decode", f"{STDLIB}/json/decoder.py", 343, 12_000, 0, 180, 180, (0.9, 0.1, 0.0, 0.0)),
    ("handle_request", f"{CWD}/app/server.py", 88, 40, 0, 120, 1_400, (0.5, 0.1, 0.3, 0.1)),
    (LONG_NAME, f"{CWD}/app/report/rendering/pipeline.py", 240, 3, 0, 60, 75, (0.8, 0.2, 0.0, 0.0)),
    ("rows", f"{CWD}/app/report/rows.py", 31, 1, 25_000, 45, 45, (0.7, 0.3, 0.0, 0.0)),
    ("_compile_bytecode", "<frozen importlib._bootstrap_external>", 750, 18, 0, 1.7, 1.7,
     (1.0, 0.0, 0.0, 0.0)),
    ("plugin_hook", "/opt/tools/plugins/audit/hooks.py", 7, 1_234_567, 0, 30, 30, (0.5, 0.5, 0.0, 0.0)),
    ("main", f"{CWD}/app/main.py", 1, 1, 0, 0.4, 2_000, (0.4, 0.02, 0.5, 0.08)),
)


def function(name: str, file: str, line: int, calls: int, resumes: int, self_ms: float, total_ms: float,
             split: tuple[float, float, float, float], scale: float = 1.0) -> FunctionStats:
    """A function whose figures (times and counts times `scale`) add up: the four parts of its total
    time are the split's shares of it, and its self time splits in the same shares."""
    self_ns, total_ns = round(self_ms * MS * scale), round(total_ms * MS * scale)
    _, over, wait, unmeasured = (round(total_ns * s) for s in split)
    f = FunctionStats(name, file, line, round(calls * scale), round(resumes * scale), self_ns, total_ns,
                      cpu_ns=total_ns - over - wait - unmeasured, wait_ns=wait, overhead_ns=over,
                      unmeasured_ns=unmeasured,
                      self_cpu_ns=round(self_ns * split[0]), self_wait_ns=round(self_ns * split[2]),
                      self_overhead_ns=round(self_ns * split[1]))
    return f


def profile(scale: float = 1.0) -> Profile:
    """The run after `scale` of its 2 s (the counts and times grow with it)."""
    p = Profile(python="3.12", wall_ns=round(WALL_NS * scale), engine="monitoring", clock="tsc",
                functions=[function(*spec, scale=scale) for spec in FUNCTIONS],
                threads=[ThreadInfo(i, 4100 + i, round(60_000 * scale), 0, 0, 0) for i in range(5)],
                split_known=True, schedstat=True, probe_ns=21.5, tool_id=3)
    for fid, f in enumerate(p.functions, 1):
        f.fid = fid
    return p


def health(at_s: float, events: int) -> Health:
    return Health(at_ns=round(at_s * 1e9), cpu_s=0.05 * at_s, events=events, dropped=0, fill=0.002,
                  lag_ns=3 * MS, slots=tuple((i, 4100 + i) for i in range(5)), returncode=None)


class _Control:
    """The control channel of a run whose functions were never switched."""

    def __init__(self) -> None:
        self.functions: dict[int, Any] = {}
        self.done: list[Any] = []

    def is_off(self, fid: int) -> bool:
        return False

    def room(self) -> int:
        return 0


class _Session:
    dial = None


class FakeSource:
    """Two snapshots one second apart (at 1 s and 2 s of the run): the first gives the calls/s a
    baseline, the second (and every later one) is what the view shows."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.returncode: int | None = None
        self.pid = 4242
        self.cleared = False
        self.control = _Control()
        self.session = _Session()
        self.taken = 0

    def elapsed_ns(self) -> int:
        return WALL_NS

    def started(self) -> bool:
        return True

    def interrupt(self) -> None:
        pass

    def clear(self) -> None:
        pass

    def snapshot(self, thread: int | None = None) -> Snapshot:
        self.taken += 1
        first = self.taken == 1
        return Snapshot(profile(0.5 if first else 1.0), self.health() if not first else health(1.0, 150_000))

    def health(self) -> Health:
        return health(2.0, 300_000)

    def symbols(self) -> dict[int, Any]:
        return {}


def source() -> LiveSource:
    return cast(LiveSource, FakeSource())
