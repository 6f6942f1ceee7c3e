"""Every numeric option of every command has a range: a value outside it is one line on stderr naming
the range, exit code 2, no traceback, and nothing started.  The bounds of the C core are its own
(_core.LIMITS, from records.h); the values just inside them are taken.  (`ulma export` has no numeric
option.)  --limit 0 means every row."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import run_process, ulma_command
from ulma import _core

Completed = subprocess.CompletedProcess[str]

LIMITS = _core.LIMITS
MIN_RING, MAX_RING = LIMITS["MIN_RING_BYTES"], LIMITS["MAX_RING_BYTES"]
RING = f"--ring-size must be between {MIN_RING >> 20}M and {MAX_RING >> 30}G"
RING_SMALL = f"{RING}: a smaller ring cannot hold what one thread writes while the monitor waits"
THREADS = f"--max-threads must be between 1 and {LIMITS['MAX_THREADS']}"
LIMIT = f"--limit must be 0 (all rows) or between 1 and {LIMITS['ID_LIMIT']}"
CPU = f"--cpu-interval must be between 0 and {LIMITS['MAX_CPU_INTERVAL_US']} microseconds"
IDS = f"--id-limit must be 0 (the default) or between {LIMITS['MIN_ID_LIMIT']} and {LIMITS['ID_LIMIT']}"
DURATION = f"--duration must be more than 0 and at most {threading.TIMEOUT_MAX:.0f} seconds"
PID = "PID must be between 1 and 2147483647"

# (options, the start of the one error line) for `ulma run` and `ulma record`
MEASURE_CASES = [
    (["--ring-size", "1K"], RING_SMALL),
    (["--ring-size", "1"], RING_SMALL),
    (["--ring-size", str(MIN_RING - 1)], RING_SMALL),
    (["--ring-size", "0"], RING_SMALL),
    (["--ring-size", "64G"], RING),
    (["--ring-size", str(MAX_RING + 1)], RING),
    (["--ring-size", "1e400K"], "argument --ring-size: not a size: '1e400K'"),
    (["--ring-size", "infK"], "argument --ring-size: not a size: 'infK'"),
    (["--cpu-interval", "-1"], CPU),
    (["--cpu-interval", str(LIMITS["MAX_CPU_INTERVAL_US"] + 1)], CPU),
    (["--limit", "-1"], LIMIT),
    (["--limit", str(LIMITS["ID_LIMIT"] + 1)], LIMIT),
]
RUN_CASES = [
    *MEASURE_CASES,
    (["--max-threads", "4294967297"], THREADS),
    (["--max-threads", "0"], THREADS),
    (["--max-threads", str(LIMITS["MAX_THREADS"] + 1)], THREADS),
    (["--id-limit", "2"], IDS),
    (["--id-limit", "-5"], IDS),
    (["--id-limit", str(LIMITS["ID_LIMIT"] + 1)], IDS),
]
ATTACH_CASES = [
    *MEASURE_CASES,
    (["--duration", "0"], DURATION),
    (["--duration", "-1"], DURATION),
    (["--duration", "nan"], DURATION),
    (["--duration", "inf"], DURATION),
]
PIDS = ["0", "-1", "2147483648"]
REPORT_LIMITS = ["-1", str(LIMITS["ID_LIMIT"] + 1)]


def assert_one_line(result: Completed, expected: str, ran: Path | None = None) -> None:
    why = f"exit code {result.returncode}\n--- stderr ---\n{result.stderr}"
    assert result.returncode == 2, why
    assert "Traceback" not in result.stderr, why
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ulma: error: {expected}"), why
    assert ran is None or not ran.exists(), f"the program ran\n{why}"


@pytest.fixture
def program(tmp_path: Path) -> Path:
    """A program that leaves a file `ran` beside it."""
    path = tmp_path / "prog.py"
    path.write_text("open(__file__[:-len('prog.py')] + 'ran', 'w').close()\n")
    return path


@pytest.mark.parametrize("command", ["run", "record"])
@pytest.mark.parametrize(("options", "expected"), RUN_CASES, ids=[" ".join(o) for o, _ in RUN_CASES])
def test_run_and_record_refuse_an_option_outside_its_range_in_one_line(
    command: str, options: list[str], expected: str, program: Path
) -> None:
    out = ["-o", str(program.parent / "t.ulma")] if command == "record" else []
    result = run_process(ulma_command([command, *out, *options, str(program)]), cwd=program.parent,
                         timeout=60)
    assert_one_line(result, expected, program.parent / "ran")
    assert not (program.parent / "t.ulma").exists()


@pytest.mark.parametrize(("options", "expected"), ATTACH_CASES, ids=[" ".join(o) for o, _ in ATTACH_CASES])
def test_attach_refuses_an_option_outside_its_range_in_one_line(options: list[str], expected: str) -> None:
    # this process has no agent: had the options been taken, the error would be that (exit code 1)
    result = run_process(ulma_command(["attach", str(os.getpid()), *options]), timeout=60)
    assert_one_line(result, expected)


@pytest.mark.parametrize("pid", PIDS)
def test_attach_refuses_a_pid_outside_what_a_process_id_can_be(pid: str) -> None:
    assert_one_line(run_process(ulma_command(["attach", pid]), timeout=60), PID)


@pytest.mark.parametrize("limit", REPORT_LIMITS)
def test_report_refuses_a_limit_outside_its_range_in_one_line(limit: str, tmp_path: Path) -> None:
    result = run_process(ulma_command(["report", "--limit", limit, str(tmp_path / "t.ulma")]), timeout=60)
    assert_one_line(result, LIMIT)


MANY = 40
MANY_FUNCTIONS = "\n".join(f"def f{i}():\n    return {i}\n" for i in range(MANY)) + (
    f"\nfor i in range({MANY}):\n    globals()[f'f{{i}}']()\n")


def test_the_bounds_themselves_are_taken_and_limit_0_shows_every_function(tmp_path: Path) -> None:
    program = tmp_path / "many.py"
    program.write_text(MANY_FUNCTIONS)
    result = run_process(ulma_command([
        "run", "--limit", "0", "--ring-size", str(MIN_RING), "--max-threads", str(LIMITS["MAX_THREADS"]),
        "--cpu-interval", str(LIMITS["MAX_CPU_INTERVAL_US"]), "--id-limit", str(LIMITS["ID_LIMIT"]),
        "-o", str(tmp_path / "t.ulma"), str(program)]), cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    shown = {name for name in re.findall(r"\bf\d+\b", result.stderr)}
    assert shown == {f"f{i}" for i in range(MANY)}, result.stderr
    header = re.search(r"ulma: (\d+) functions, top (\d+) by self time", result.stderr)
    assert header is not None and int(header[2]) >= MANY, result.stderr
    # the same from the trace, and at the ring size's upper bound
    report = run_process(ulma_command(["report", "--limit", "0", str(tmp_path / "t.ulma")]), timeout=60)
    assert report.returncode == 0 and {f"f{i}" for i in range(MANY)} <= set(
        re.findall(r"\bf\d+\b", report.stdout)), report.stdout + report.stderr
    most = run_process(ulma_command(["run", "--no-report", "--ring-size", "1G", str(program)]),
                       cwd=tmp_path, timeout=60)
    assert most.returncode == 0, most.stderr


THRESHOLD = "--threshold must be between 0 and 1000000 per cent"
HISTORY_CASES = [
    (["top", "--limit", "-1"], LIMIT),
    (["top", "--limit", str(LIMITS["ID_LIMIT"] + 1)], LIMIT),
    (["compare", "a", "b", "--threshold", "-0.5"], THRESHOLD),
    (["compare", "a", "b", "--threshold", "1000001"], THRESHOLD),
    (["compare", "a", "b", "--threshold", "nan"], THRESHOLD),
]


@pytest.mark.parametrize(("options", "expected"), HISTORY_CASES, ids=[" ".join(o) for o, _ in HISTORY_CASES])
def test_history_refuses_an_option_outside_its_range_in_one_line(options: list[str], expected: str,
                                                                  tmp_path: Path) -> None:
    # a history that does not exist: had the options been taken, the error would be that (exit code 1)
    dsn = f"chdb:{tmp_path / 'none'}"
    assert_one_line(run_process(ulma_command(["history", *options, "--dsn", dsn]), timeout=60), expected)
    assert not (tmp_path / "none").exists()
