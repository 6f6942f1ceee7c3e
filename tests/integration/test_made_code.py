"""Programs that make code with exec(): counts stay exact, identical definitions share one row, the
monitor's memory follows the functions each thread ran (not functions x threads), and functions made
after every id is taken are counted in one overflow row, never lost silently.

Ground truth is the program itself (programs/made_code.py prints the calls it made per function)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import run_process

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "made_code.py"
MAXRSS = PROGRAMS_DIR / "_monitor_maxrss.py"
OVERFLOW_ROW = "<functions past the id limit>"

Completed = subprocess.CompletedProcess[str]
UlmaJson = Callable[..., tuple[Completed, dict[str, Any]]]


def _made_rows(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The report's rows of the functions the program made (not the exec'd module bodies), by name (a
    name may have several rows)."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for fn in report["functions"]:
        if fn["file"].startswith(("<made ", "<same>")) and fn["name"] != "<module>":
            rows.setdefault(fn["name"], []).append(fn)
    return rows


def test_exec_made_functions_have_exact_counts_and_identical_definitions_share_one_row(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str]
) -> None:
    args = [*engine_flags, "--no-report", str(PROGRAM), "30000", "30000", "0"]
    result, report = ulma_json(args, timeout=300)
    assert result.returncode == 0, describe(result)
    truth: dict[str, int] = json.loads(result.stdout)
    rows = _made_rows(report)
    # 30 000 code objects from one identical definition: one row, every call in it
    assert len(rows["same"]) == 1, f"{len(rows['same'])} rows for one definition"
    assert rows["same"][0]["calls"] == truth["same"] == 30000
    # 30 000 distinct definitions: one row each, each with the calls the program made
    made = {name: fns[0]["calls"] for name, fns in rows.items() if len(fns) == 1}
    assert sorted(rows) == sorted(truth)
    assert made == truth
    assert report["ids_overflow"] == 0


def test_threads_that_ran_one_function_do_not_multiply_the_monitors_memory_by_all_functions(
    engine_flags: list[str], describe: Callable[[Completed], str]
) -> None:
    """32 threads each call one function made after 30 000 others.  Per-thread figures kept densely by
    function id would cost 32 x 30 000 x ~136 B (~130 MiB) more than the same program without the
    threads; sparse ones cost what the threads ran."""
    peak: dict[int, int] = {}
    for threads in (0, 32):
        cmd = [sys.executable, str(MAXRSS), "run", *engine_flags, "--no-report", str(PROGRAM), "30000", "0",
               str(threads)]
        result = run_process(cmd, timeout=300)
        assert result.returncode == 0, describe(result)
        found = re.findall(r"MONITOR_MAXRSS_KB=(\d+)", result.stderr)
        assert found, describe(result)
        peak[threads] = int(found[-1])
    extra_mib = (peak[32] - peak[0]) / 1024
    assert extra_mib < 16, f"32 threads cost the monitor {extra_mib:.0f} MiB more ({peak})"


def test_functions_past_the_id_limit_are_counted_in_one_overflow_row(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str]
) -> None:
    args = [*engine_flags, "--id-limit", "1000", str(PROGRAM), "3000", "10", "0"]
    result, report = ulma_json(args, timeout=300)
    assert result.returncode == 0, describe(result)
    truth: dict[str, int] = json.loads(result.stdout)
    rows = _made_rows(report)
    overflow = [fn for fn in report["functions"] if fn["name"] == OVERFLOW_ROW]
    assert len(overflow) == 1, describe(result)
    # every function that got no row of its own is in the overflow row: no call is lost
    own = {name: fns[0]["calls"] for name, fns in rows.items()}
    assert all(own[name] == truth[name] for name in own)
    missing = sorted(set(truth) - set(own))
    assert len(missing) >= 2000
    assert overflow[0]["calls"] >= sum(truth[name] for name in missing)
    assert report["ids_overflow"] >= len(missing)
    # and the report says so
    said = r"\d+ functions were made after every function id was taken"
    assert re.search(said, result.stderr), describe(result)
