"""The dial: `ulma run --budget PCT` switches off the functions whose events
cost most for the time they show until its estimated overhead is under PCT.
What stays traced is counted exactly as cProfile counts it (cProfile runs the
same deterministic program in a separate process); the report lists every
function it switched off with its count up to the switch, checked against the
program's own record of when it made each call; bad values are one line."""

from __future__ import annotations

import bisect
import subprocess
import sys
from array import array
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _cprofile_counts, run_process, subprocess_env, ulma_command

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "budgeted.py"
Key = tuple[int, str]
Completed = Any


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[Key, int]]:
    """The plain run's output and cProfile's counts of the program's functions."""
    plain = subprocess.run([sys.executable, str(PROGRAM)], cwd=PROGRAMS_DIR, capture_output=True,
                           text=True, timeout=120, env=subprocess_env(), check=True)
    prof = tmp_path_factory.mktemp("dial") / "reference.prof"
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), str(PROGRAM)], cwd=PROGRAMS_DIR,
                   capture_output=True, text=True, timeout=120, env=subprocess_env(), check=True)
    return plain.stdout, _cprofile_counts(prof, PROGRAM)


def test_budget_switches_off_the_short_hot_function_and_counts_the_rest_as_cprofile(
    engine_flags: list[str], reference: tuple[str, dict[Key, int]],
    ulma_json: Callable[..., tuple[Completed, dict[str, Any]]],
    ulma_functions: Callable[[Mapping[str, Any], Path], dict[Key, dict[str, Any]]],
) -> None:
    stdout, counts = reference
    result, report = ulma_json([*engine_flags, "--no-report", "--budget", "1", str(PROGRAM)],
                               cwd=PROGRAMS_DIR)
    assert result.returncode == 0 and result.stdout == stdout, result.stderr
    assert report["dropped"] == 0
    dial = report["dial"]
    assert dial["budget"] == 1
    off = {sw["function"] for sw in dial["switched_off"]}
    # leaf makes 99.9 % of the calls, each a few hundred ns: it is what the budget cannot afford
    assert "leaf" in off, dial
    got = ulma_functions(report, PROGRAM)
    never_off = {key: n for key, n in counts.items() if key[1] not in off}
    assert {name for _, name in never_off} >= {"main", "mid", "slow"}
    for key, n in never_off.items():
        fn = got.get(key)
        assert fn is not None and fn["calls"] + fn["resumes"] == n, (key, n, fn)
    (leaf_key,) = [key for key in counts if key[1] == "leaf"]
    assert got[leaf_key]["calls"] < counts[leaf_key]  # it was really switched off


def test_report_lists_what_the_dial_switched_off_with_its_count_up_to_the_switch(
    engine_flags: list[str], tmp_path: Path,
    ulma_json: Callable[..., tuple[Completed, dict[str, Any]]],
) -> None:
    stamps_file = tmp_path / "stamps"
    result, report = ulma_json([*engine_flags, "--budget", "1", str(PROGRAM), str(stamps_file)],
                               cwd=PROGRAMS_DIR)
    assert result.returncode == 0, result.stderr
    stamps = array("q")
    stamps.frombytes(stamps_file.read_bytes())
    assert len(stamps) == 1_000_000
    (sw,) = [sw for sw in report["dial"]["switched_off"] if sw["function"] == "leaf"]
    assert sw["back_on_s"] is None and sw["done_mono_ns"], sw
    # the program's own count of its calls before the switch took effect (it notes
    # CLOCK_MONOTONIC in each call; the agent's tick is converted to it, which may
    # misplace the moment by a call or two, a few hundred ns)
    made_before = bisect.bisect_left(stamps, sw["done_mono_ns"])
    assert 0 < made_before < len(stamps)
    assert abs(sw["calls"] - made_before) <= 2, (sw["calls"], made_before)
    # the report a user reads names it with that count, and the estimate over time
    assert f"leaf  {sw['calls']:,} calls up to then" in result.stderr, result.stderr
    assert "estimated overhead over time" in result.stderr
    assert report["dial"]["history"]


@pytest.mark.parametrize(("args", "line"), [
    (["--budget", "0"], "ulma: error: --budget must be more than 0 and at most 100 per cent"),
    (["--budget", "-2"], "ulma: error: --budget must be more than 0 and at most 100 per cent"),
    (["--budget", "101"], "ulma: error: --budget must be more than 0 and at most 100 per cent"),
    (["--budget", "nan"], "ulma: error: --budget must be more than 0 and at most 100 per cent"),
    (["--budget", "abc"], "ulma: error: argument --budget: invalid float value: 'abc'"),
    (["--refresh", "0"], "ulma: error: --refresh must be between 1 and 60000 ms"),
    (["--refresh", "x"], "ulma: error: argument --refresh: invalid int value: 'x'"),
])
def test_bad_dial_values_are_one_line_and_exit_2(args: list[str], line: str) -> None:
    result = run_process(ulma_command(["run", *args, str(PROGRAM)]), cwd=PROGRAMS_DIR)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), result.stderr
    assert result.stdout == ""


def test_burst_counts_are_marked_sampled_at_most_the_true_counts_and_scaled_within_a_sane_factor(
    engine_flags: list[str], reference: tuple[str, dict[Key, int]],
    ulma_json: Callable[..., tuple[Completed, dict[str, Any]]],
    ulma_functions: Callable[[Mapping[str, Any], Path], dict[Key, dict[str, Any]]],
) -> None:
    stdout, counts = reference
    result, report = ulma_json([*engine_flags, "--burst", "10:50", str(PROGRAM)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0 and result.stdout == stdout, result.stderr
    burst = report["burst"]
    assert burst["sampled"] is True and (burst["on_ms"], burst["period_ms"]) == (10, 50)
    got = ulma_functions(report, PROGRAM)
    for key, n in counts.items():
        fn = got.get(key)
        assert fn is None or fn["calls"] <= n, (key, n, fn)  # only what was seen
    (leaf_key,) = [key for key in counts if key[1] == "leaf"]
    leaf = got[leaf_key]
    assert leaf["calls"] < counts[leaf_key]  # really sampled: most calls went unseen
    # the scaled estimate: the true count within a factor of 3 either way
    assert counts[leaf_key] / 3 <= leaf["calls_scaled"] <= 3 * counts[leaf_key], (leaf, counts[leaf_key])
    assert "sampled (--burst 10:50)" in result.stderr and "estimated" in result.stderr


def test_bad_burst_values_are_one_line_and_exit_2() -> None:
    for value in ("5:3", "abc", "0:10", "5:5", "5:70000"):
        result = run_process(ulma_command(["run", "--burst", value, str(PROGRAM)]), cwd=PROGRAMS_DIR)
        assert result.returncode == 2, result
        lines = result.stderr.splitlines()
        want = "ulma: error: argument --burst: must be ON_MS:PERIOD_MS with 1 <= ON_MS < PERIOD_MS"
        assert len(lines) == 1 and lines[0].startswith(want), result.stderr
