"""Bad input: one clear line on stderr starting with "ulma: error:", a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]

BAD_ENGINES = ["no-such-engine"] + (["monitoring"] if sys.version_info < (3, 12) else [])


def assert_one_error_line(result: Completed, describe: Callable[[Completed], str]) -> None:
    assert result.returncode != 0, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr\n{describe(result)}"
    assert lines[0].startswith("ulma: error:"), describe(result)
    assert result.stdout == "", describe(result)


@pytest.mark.parametrize(
    "args",
    [
        ["run", "no_such_script_xyz.py"],
        ["run", str(PROGRAMS_DIR / "no_such_dir" / "missing.py")],
        ["run", "-m", "no_such_module_xyz"],
        ["run", "-m", "identpkg.no_such_module_xyz"],
        ["run"],
        ["run", "-m"],
        [],
    ],
    ids=[
        "missing-script",
        "missing-script-in-missing-dir",
        "missing-module",
        "missing-submodule",
        "run-nothing",
        "run-m-nothing",
        "no-arguments",
    ],
)
def test_bad_input_prints_one_error_line_and_exits_non_zero(
    args: list[str], run_ulma: RunFn, describe: Callable[[Completed], str]
) -> None:
    assert_one_error_line(run_ulma(args, cwd=PROGRAMS_DIR, timeout=60), describe)


@pytest.mark.parametrize("engine_name", BAD_ENGINES)
def test_unavailable_engine_prints_one_error_line(
    engine_name: str, run_ulma: RunFn, describe: Callable[[Completed], str]
) -> None:
    program = str(PROGRAMS_DIR / "report_hot.py")
    result = run_ulma(["run", "--engine", engine_name, program], cwd=PROGRAMS_DIR, timeout=60)
    assert_one_error_line(result, describe)


def test_console_script_with_no_arguments_prints_one_error_line(
    run_python: RunFn, describe: Callable[[Completed], str]
) -> None:
    script = Path(sysconfig.get_path("scripts")) / "ulma"
    assert script.exists(), f"no console script at {script}"
    # Run through the interpreter so the test does not depend on the script's shebang or PATH.
    result = run_python([str(script)], cwd=PROGRAMS_DIR, timeout=60)
    assert_one_error_line(result, describe)


@pytest.mark.parametrize("value", ["abc", "-1", "0", "inf", "nan"])
def test_a_bad_debug_hint_scale_prints_one_error_line(
    value: str, run_ulma: RunFn, describe: Callable[[Completed], str],
) -> None:
    result = run_ulma(["run", "--no-report", str(PROGRAMS_DIR / "report_hot.py")],
                      env={"ULMA_DEBUG_HINT_SCALE": value})
    assert_one_error_line(result, describe)
