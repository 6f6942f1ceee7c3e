"""ulma keeps the program's recursion behaviour: RecursionError at the same depth, never earlier, no crash.

programs/recursion_limit.py prints the absolute depth (in Python frames, counted from the bottom of the
stack, launcher frames included) at which RecursionError was raised, or that it reached its target.

On 3.12+ the recursion limit counts Python frames only, so that depth is exactly the limit however the
program was launched. On 3.11 C function calls take from the same budget, so a launcher that runs the
program through exec() (as runpy does) reaches one frame less than `python prog.py`; the test allows
ulma up to 2 frames less there, and no more.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "recursion_limit.py"
LAUNCHER_ALLOWANCE = 2 if sys.version_info < (3, 12) else 0

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]


@pytest.mark.parametrize(
    ("limit", "target"),
    [("default", "error"), ("100000", "30000"), ("100000", "error")],
    ids=["default-limit-until-error", "limit-100000-depth-30000", "limit-100000-until-error"],
)
def test_recursion_depth_and_outcome_match_plain_python(
    limit: str,
    target: str,
    engine_flags: list[str],
    run_python: RunFn,
    run_ulma: RunFn,
    describe: Callable[[Completed], str],
) -> None:
    plain = run_python([str(PROGRAM), limit, target], cwd=PROGRAMS_DIR)
    assert plain.returncode == 0, describe(plain)
    profiled = run_ulma(["run", *engine_flags, "--no-report", str(PROGRAM), limit, target], cwd=PROGRAMS_DIR)
    assert profiled.returncode == plain.returncode, describe(profiled)
    if target == "error":
        depth = re.fullmatch(r"RecursionError at depth (\d+)\n", plain.stdout)
        assert depth, describe(plain)
        got = re.fullmatch(r"RecursionError at depth (\d+)\n", profiled.stdout)
        assert got, describe(profiled)
        expected = int(depth.group(1))
        assert expected - LAUNCHER_ALLOWANCE <= int(got.group(1)) <= expected, (
            f"plain python raised RecursionError at depth {expected}, under ulma at {got.group(1)}"
        )
    else:
        assert profiled.stdout == plain.stdout == f"reached {target}\n", describe(profiled)
