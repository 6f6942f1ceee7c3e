"""A trace cut short (the monitor killed with SIGKILL a moment into the run)
still carries what the agent measured at its start: `ulma report` of it
shows the calibrated probe cost, not 0.0 ns."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import kill_group, subprocess_env, ulma_command
from ulma.format import trace

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "cut_short.py"

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]


def has_events(path: Path) -> bool:
    try:
        return any(c.kind == trace.EVENTS for c in trace.TraceReader(str(path)).chunks())
    except trace.TraceError:
        return False


def test_report_of_a_trace_cut_short_shows_the_calibrated_probe_cost(
    engine_flags: list[str], tmp_path: Path, run_ulma: RunFn, describe: Callable[[Completed], str],
) -> None:
    path, out = tmp_path / "cut.ulma", tmp_path / "cut.json"
    command = ulma_command(["run", *engine_flags, "-o", str(path), "--no-report", str(PROGRAM)])
    proc = subprocess.Popen(command, cwd=PROGRAMS_DIR, env=subprocess_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + 30
        while not has_events(path):
            if time.monotonic() > deadline:
                pytest.fail("no events chunk written within 30 s")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # the monitor: no END record, and within the first second
        proc.wait(30)
    finally:
        proc.stdin.close()  # the program (orphaned) reads EOF and ends
        kill_group(proc.pid)
    result = run_ulma(["report", "--json", str(out), str(path)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    assert "no end record" in result.stderr, describe(result)
    probe = json.loads(out.read_text())["probe_ns"]
    assert 0 < probe < 10_000, probe
    shown = re.search(r"probe calibrated at ([\d.]+) ns", result.stdout)
    assert shown is not None and float(shown.group(1)) == pytest.approx(probe, abs=0.1), result.stdout
