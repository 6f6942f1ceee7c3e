"""The program sees what it sees under plain python: sys.argv, sys.path[0], __name__, __file__, __main__."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
TESTS_DIR = PROGRAMS_DIR.parent

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]

# Arguments that look like ulma's own options must reach the program untouched.
PROGRAM_ARGS = ["alpha", "--json", "out.json", "-m", "--engine", "pep523", "--", "last word"]


def identity(result: Completed, describe: Callable[[Completed], str]) -> dict[str, Any]:
    assert result.returncode == 0, describe(result)
    try:
        seen: dict[str, Any] = json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"the program's output is not its JSON\n{describe(result)}") from None
    return seen


def test_script_by_relative_path_sees_the_same_as_under_python(
    engine_flags: list[str], run_python: RunFn, run_ulma: RunFn, describe: Callable[[Completed], str]
) -> None:
    script = "../programs/show_identity.py"
    cwd = TESTS_DIR / "integration"
    plain = identity(run_python([script, *PROGRAM_ARGS], cwd=cwd), describe)
    ulma_args = ["run", *engine_flags, "--no-report", script, *PROGRAM_ARGS]
    profiled = identity(run_ulma(ulma_args, cwd=cwd), describe)
    assert plain["argv"] == [script, *PROGRAM_ARGS]  # what python itself does, as the baseline
    assert profiled == plain


def test_module_run_with_dash_m_sees_the_same_as_under_python(
    engine_flags: list[str], run_python: RunFn, run_ulma: RunFn, describe: Callable[[Completed], str]
) -> None:
    plain = identity(run_python(["-m", "identpkg.show", *PROGRAM_ARGS], cwd=PROGRAMS_DIR), describe)
    ulma_args = ["run", *engine_flags, "--no-report", "-m", "identpkg.show", *PROGRAM_ARGS]
    profiled = identity(run_ulma(ulma_args, cwd=PROGRAMS_DIR), describe)
    assert plain["argv"] == [str(PROGRAMS_DIR / "identpkg" / "show.py"), *PROGRAM_ARGS]
    assert plain["spec_name"] == "identpkg.show"
    assert profiled == plain
