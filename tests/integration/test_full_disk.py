"""A report that cannot be written is one clear line, and the program's exit code still shows."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_json_report_on_a_full_disk_is_one_error_line(run_ulma: RunFn) -> None:
    result = run_ulma(["run", "--json", "/dev/full", "--no-report", str(PROGRAMS_DIR / "report_hot.py")],
                      cwd=PROGRAMS_DIR)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ulma: error:")]
    assert len(errors) == 1 and "/dev/full" in errors[0], result.stderr
