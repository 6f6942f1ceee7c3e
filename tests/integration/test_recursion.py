"""ulma keeps the program's recursion behaviour: RecursionError at the same depth, never earlier, no crash.

programs/recursion_limit.py prints the depth (in Python frames, counted from the program's own <module>
frame) at which RecursionError was raised, or that it reached its target depth. Under plain python that
depth is the recursion limit; under ulma it must be the same number, with every engine, on every Python:
whatever frames ulma keeps below the program must not take from the program's recursion budget, and an
engine must neither make the program fail earlier (a C stack or C recursion limit) nor let it recurse
deeper than it could unprofiled.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "recursion_limit.py"

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
        assert got.group(1) == depth.group(1), (
            f"plain python raised RecursionError at depth {depth.group(1)}, under ulma at {got.group(1)}"
        )
    else:
        assert profiled.stdout == plain.stdout == f"reached {target}\n", describe(profiled)
