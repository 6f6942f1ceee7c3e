"""The run time is the program's own: a monitor stopped (SIGSTOP) while the
program runs and ends sees the exit late, and that delay is not run time."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import kill_group, subprocess_env, ulma_command

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "monitor_stopped.py"
MS = 1_000_000
STOPPED_S = 1.5


def test_time_the_monitor_was_stopped_is_not_run_time(engine_flags: list[str], tmp_path: Path) -> None:
    out, trace = tmp_path / "run.json", tmp_path / "run.ulma"
    cmd = ulma_command(["run", *engine_flags, "--json", str(out), "-o", str(trace), "--no-report",
                        str(PROGRAM)])
    proc = subprocess.Popen(cmd, cwd=PROGRAMS_DIR, env=subprocess_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGSTOP)  # the monitor only: the program runs on and ends
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        line = proc.stdout.readline()  # the program's last line: it ended, the monitor is still stopped
        time.sleep(STOPPED_S)
        proc.send_signal(signal.SIGCONT)
        proc.wait(timeout=120)
        err = proc.stderr.read()
    finally:
        kill_group(proc.pid)
    assert proc.returncode == 0, err.decode(errors="replace")
    truth = json.loads(line)["wall_ns"]
    report = json.loads(out.read_text())
    # the program's own run time, give or take its interpreter's first and last steps
    assert abs(report["wall_ns"] - truth) <= max(0.02 * truth, 5 * MS), (report["wall_ns"], truth)
    result = subprocess.run([*ulma_command(["report", "--json", str(tmp_path / "r.json"), str(trace)])],
                            cwd=PROGRAMS_DIR, env=subprocess_env(), capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["wall_ns"] == report["wall_ns"]
