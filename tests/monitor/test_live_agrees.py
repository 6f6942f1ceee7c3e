"""What a live view shows at the end of a run, the final profile (`--json`)
and the profile replayed from the trace file agree within 1 %: all three
form waiting from the same sums at the refined calibration, even when the
session's first calibration was 20x off (a busy machine used to do that)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ulma.agent import resolve_engine
from ulma.format import trace
from ulma.monitor.offline import load_profile
from ulma.monitor.profile import FunctionStats, Profile
from ulma.monitor.session import Options, Run, Session, Target

PROGRAM = Path(__file__).resolve().parents[1] / "programs" / "split_under_load.py"
NAMES = ("computes", "sleeps", "mixed")


def by_name(profile: Profile) -> dict[str, FunctionStats]:
    return {f.name: f for f in profile.functions if f.file == str(PROGRAM) and f.name in NAMES}


def test_live_final_and_trace_figures_agree_within_one_percent(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(Session.ENV_HINT_SCALE, "20")
    path = tmp_path / "run.ulma"
    run = Run(Target("script", str(PROGRAM), ()),
              Options(engine=resolve_engine(engine), trace_path=str(path)),
              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert run.drain_until_exit() == 0
    run.settle()
    live = run.live_profile()
    final = run.finish().profile
    replayed = load_profile(trace.TraceReader(str(path)))
    views = [by_name(p) for p in (live, final, replayed)]
    assert all(len(v) == len(NAMES) for v in views), views
    for name in NAMES:
        a, b, c = (v[name] for v in views)
        # What each function did, so the comparison below is not of zeros:
        # `computes` may well wait nothing on a quiet machine.
        assert a.cpu_ns > 0 or name == "sleeps", a
        assert a.wait_ns > 0 or name == "computes", a
        for part in ("total_ns", "self_ns", "cpu_ns", "wait_ns", "overhead_ns"):
            values = [getattr(f, part) for f in (a, b, c)]
            assert max(values) - min(values) <= 0.01 * a.total_ns, (name, part, values)
    walls = [p.wall_ns for p in (live, final, replayed)]
    assert max(walls) - min(walls) <= 0.01 * final.wall_ns, walls
