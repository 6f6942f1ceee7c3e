"""`ulma record` / `ulma run -o` keep the event stream; `ulma report` reads it back to the same figures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import subprocess_env, ulma_command
from ulma.format.trace import TraceReader

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]


def counts(report: dict[str, object]) -> dict[tuple[str, int, str], tuple[int, int]]:
    functions = report["functions"]
    assert isinstance(functions, list)
    return {(f["file"], f["line"], f["name"]): (f["calls"], f["resumes"]) for f in functions}


def test_report_from_a_recording_has_the_counts_the_run_reported(tmp_path: Path, run_ulma: RunFn) -> None:
    program = str(PROGRAMS_DIR / "generators.py")
    live_json, file_json, trace = tmp_path / "live.json", tmp_path / "file.json", tmp_path / "run.ulma"
    recorded = run_ulma(["run", "--no-report", "--json", str(live_json), "-o", str(trace), program],
                        cwd=PROGRAMS_DIR)
    assert recorded.returncode == 0, recorded.stderr
    reported = run_ulma(["report", str(trace), "--json", str(file_json)], cwd=PROGRAMS_DIR)
    assert reported.returncode == 0, reported.stderr
    live, offline = json.loads(live_json.read_text()), json.loads(file_json.read_text())
    assert counts(offline) == counts(live)
    assert offline["events"] == live["events"] and offline["dropped"] == live["dropped"] == 0
    assert "ulma: warning" not in reported.stderr
    assert "count_up" in reported.stdout or "gen" in reported.stdout


def test_report_from_a_recording_marks_the_switched_off_functions_and_the_scope_as_the_run_did(
        tmp_path: Path, run_ulma: RunFn) -> None:
    # the dial switches leaf() off (see test_dial.py); --exclude puts the scope in the report
    program = str(PROGRAMS_DIR / "budgeted.py")
    live_json, file_json, trace = tmp_path / "live.json", tmp_path / "file.json", tmp_path / "run.ulma"
    recorded = run_ulma(["run", "--no-report", "--budget", "1", "--exclude", "nothing_matches_this",
                         "--json", str(live_json), "-o", str(trace), program], cwd=PROGRAMS_DIR)
    assert recorded.returncode == 0, recorded.stderr
    reported = run_ulma(["report", str(trace), "--json", str(file_json)], cwd=PROGRAMS_DIR)
    assert reported.returncode == 0, reported.stderr
    live, offline = json.loads(live_json.read_text()), json.loads(file_json.read_text())

    def marks(report: dict[str, Any]) -> dict[str, tuple[bool, int, bool]]:
        return {f["name"]: (f["off"], f["off_ns"], f["untraced_callees"]) for f in report["functions"]
                if f["off_ns"] or f["untraced_callees"]}

    assert live["scope"] == ["--exclude nothing_matches_this"]
    assert offline["scope"] == live["scope"]
    assert "leaf" in marks(live)
    assert marks(offline) == marks(live)
    assert "traced: --exclude nothing_matches_this" in reported.stdout
    assert "off" in reported.stdout.split("leaf", 1)[1].splitlines()[0]


def test_report_from_a_recording_has_the_four_way_split_the_run_reported(
        tmp_path: Path, run_ulma: RunFn) -> None:
    program = str(PROGRAMS_DIR / "time_split.py")
    live_json, file_json, trace = tmp_path / "live.json", tmp_path / "file.json", tmp_path / "run.ulma"
    recorded = run_ulma(["run", "--no-report", "--json", str(live_json), "-o", str(trace),
                         "--exclude", "*excluded_helper", program], cwd=PROGRAMS_DIR)
    assert recorded.returncode == 0, recorded.stderr
    reported = run_ulma(["report", str(trace), "--json", str(file_json)], cwd=PROGRAMS_DIR)
    assert reported.returncode == 0, reported.stderr
    live, offline = json.loads(live_json.read_text()), json.loads(file_json.read_text())
    assert offline["cpu_readings"] is live["cpu_readings"] is True
    assert offline["probe_ns"] == live["probe_ns"] > 0
    by_name = {f["name"]: f for f in live["functions"] if f["file"] == program}
    parts = ("cpu_ns", "wait_ns", "overhead_ns", "unmeasured_ns", "self_wait_ns", "wait_runnable_ns")
    for f in offline["functions"]:
        if f["file"] != program:
            continue
        mine = by_name[f["name"]]
        for part in parts:  # the same events; only the tick calibration differs a little
            assert abs(f[part] - mine[part]) <= max(mine["total_ns"] // 200, 20_000), (part, f, mine)
    assert "excluded_helper" not in {f["name"] for f in offline["functions"]}


def test_record_prints_one_summary_line_and_passes_the_exit_code_through(
        tmp_path: Path, run_ulma: RunFn) -> None:
    trace = tmp_path / "exit.ulma"
    result = run_ulma(["record", "-o", str(trace), str(PROGRAMS_DIR / "sys_exit_deep.py")], cwd=PROGRAMS_DIR)
    plain = subprocess.run([sys.executable, str(PROGRAMS_DIR / "sys_exit_deep.py")], capture_output=True,
                           timeout=60, check=False)
    assert result.returncode == plain.returncode != 0
    assert [line for line in result.stderr.splitlines() if line.startswith("ulma: recorded")]
    assert trace.stat().st_size > 0


def test_record_without_an_output_file_is_one_error_line(run_ulma: RunFn) -> None:
    result = run_ulma(["record", str(PROGRAMS_DIR / "report_hot.py")], cwd=PROGRAMS_DIR)
    assert result.returncode != 0
    assert result.stderr.strip().startswith("ulma: error:") and len(result.stderr.strip().splitlines()) == 1


def test_a_trace_that_cannot_be_written_at_all_stops_before_the_program_runs(run_ulma: RunFn) -> None:
    result = run_ulma(["run", "--no-report", "-o", "/dev/full", str(PROGRAMS_DIR / "report_hot.py")],
                      cwd=PROGRAMS_DIR)
    assert result.returncode != 0
    assert result.stderr.startswith("ulma: error:") and len(result.stderr.splitlines()) == 1, result.stderr
    assert "No space left" in result.stderr
    assert result.stdout == ""  # the program did not run


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (needs root to mount; skipped otherwise): room for the start of a trace only."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here: " + done.stderr.decode(errors="replace").strip())
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def test_a_disk_that_fills_up_mid_run_stops_the_recording_not_the_program(
        small_disk: Path, run_ulma: RunFn) -> None:
    trace = small_disk / "full.ulma"
    result = run_ulma(["run", "-o", str(trace), str(PROGRAMS_DIR / "busy_drops.py")], cwd=PROGRAMS_DIR)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ulma: error:")]
    assert len(errors) == 1 and "No space left" in errors[0], result.stderr
    assert result.returncode == 1  # the program succeeded; what ulma recorded is incomplete
    assert "dropped" in result.stderr  # the report still came, from the live aggregate
    reread = run_ulma(["report", str(trace)], cwd=PROGRAMS_DIR)
    assert reread.returncode == 0 and "no end record" in reread.stderr


def test_a_recording_whose_monitor_is_killed_reads_up_to_the_last_whole_chunk(
        tmp_path: Path, run_ulma: RunFn) -> None:
    trace = tmp_path / "killed.ulma"
    program = PROGRAMS_DIR / "attach_target.py"  # runs until its stop file appears: never, here
    proc = subprocess.Popen(
        ulma_command(["record", "-o", str(trace), str(program), str(tmp_path / "never")]),
        cwd=PROGRAMS_DIR, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        started = time.monotonic()
        deadline = started + 60
        # long enough for a chunk of events and a clock calibration record (once a second)
        while time.monotonic() < deadline and (
                not trace.exists() or trace.stat().st_size < 100_000 or time.monotonic() - started < 2.5):
            time.sleep(0.02)
        assert trace.exists() and trace.stat().st_size >= 100_000, "nothing recorded in time"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    reader = TraceReader(str(trace))
    for _chunk in reader.chunks():
        pass
    assert reader.end is None and reader.calib is not None  # times are still calibrated
    result = run_ulma(["report", str(trace)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, result.stderr
    assert "ulma: warning:" in result.stderr and "no end record" in result.stderr
    assert "events" in result.stdout
