"""An uncaught exception looks exactly as under plain python: ulma's own frames never show."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]


def test_uncaught_exception_stderr_is_identical_to_plain_python(
    engine_flags: list[str], run_python: RunFn, run_ulma: RunFn
) -> None:
    program = str(PROGRAMS_DIR / "uncaught_exception.py")
    plain = run_python([program], cwd=PROGRAMS_DIR)
    profiled = run_ulma(["run", *engine_flags, "--no-report", program], cwd=PROGRAMS_DIR)
    assert "Traceback (most recent call last):" in plain.stderr
    assert (profiled.returncode, profiled.stdout, profiled.stderr) == (
        plain.returncode, plain.stdout, plain.stderr)


def test_syntax_error_stderr_is_identical_to_plain_python(
    tmp_path: Path, run_python: RunFn, run_ulma: RunFn
) -> None:
    program = tmp_path / "broken.py"
    program.write_text("x = (\n")
    plain = run_python([str(program)], cwd=tmp_path)
    profiled = run_ulma(["run", "--no-report", str(program)], cwd=tmp_path)
    assert "SyntaxError" in plain.stderr
    assert (profiled.returncode, profiled.stderr) == (plain.returncode, plain.stderr)
