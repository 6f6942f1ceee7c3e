"""The end-of-run text report: on stderr, sorted by self time, with event and drop counts."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "report_hot.py"

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]
UlmaJson = Callable[..., tuple[Completed, dict[str, Any]]]
FunctionNamed = Callable[[Mapping[str, Any], Path, str], tuple[int, dict[str, Any]]]


def row_of(lines: list[str], program: Path, line: int) -> int:
    """Index of the report line naming program:line (the function defined there)."""
    pattern = re.compile(rf"{re.escape(program.name)}:{line}\b")
    rows = [i for i, text in enumerate(lines) if pattern.search(text)]
    listing = "\n".join(lines)
    assert len(rows) == 1, f"expected one row for {program.name}:{line}, found {len(rows)}:\n{listing}"
    return rows[0]


def test_report_lists_the_hot_function_first_with_event_and_drop_counts(
    engine_flags: list[str],
    run_python: RunFn,
    ulma_json: UlmaJson,
    function_named: FunctionNamed,
    counts_next_to: Callable[[str, str], list[int]],
    describe: Callable[[Completed], str],
) -> None:
    plain = run_python([str(PROGRAM)], cwd=PROGRAMS_DIR)
    result, report = ulma_json([*engine_flags, str(PROGRAM)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    assert result.stdout == plain.stdout, "the report must not go to stdout\n" + describe(result)
    lines = result.stderr.splitlines()

    header = [line for line in lines if all(word in line.lower() for word in ("calls", "self", "total", "%"))]
    assert header, f"no table header with calls, self, total and %\n{describe(result)}"
    _, hot = function_named(report, PROGRAM, "hot")
    hot_row = row_of(lines, PROGRAM, hot["line"])
    assert re.search(r"(?<![\w.])hot\b", lines[hot_row]), lines[hot_row]
    for name in ("main", "cold"):
        _, fn = function_named(report, PROGRAM, name)
        assert hot_row < row_of(lines, PROGRAM, fn["line"]), f"hot() not above {name}()\n{describe(result)}"

    for word, key in (("events", "events"), ("dropped", "dropped")):
        shown = counts_next_to(result.stderr, word)
        assert shown == [report[key]], (
            f"the report should show {word} {report[key]} (as the JSON), shows {shown}\n{describe(result)}"
        )


def test_no_report_option_prints_nothing_but_the_program_output(
    engine_flags: list[str], run_python: RunFn, run_ulma: RunFn, describe: Callable[[Completed], str]
) -> None:
    plain = run_python([str(PROGRAM)], cwd=PROGRAMS_DIR)
    result = run_ulma(["run", *engine_flags, "--no-report", str(PROGRAM)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    assert (result.stdout, result.stderr) == (plain.stdout, plain.stderr), describe(result)
