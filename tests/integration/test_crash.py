"""A program that crashes loses nothing it did before: the monitor reads what
the writer wrote even if it was never published."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "crash_after_work.py"

Completed = subprocess.CompletedProcess[str]


def test_events_before_a_crash_are_all_counted(
    engine_flags: list[str], ulma_json: Callable[..., tuple[Completed, dict[str, Any]]]
) -> None:
    result, report = ulma_json([*engine_flags, "--no-report", str(PROGRAM)], cwd=PROGRAMS_DIR)
    assert result.returncode == 128 + signal.SIGABRT, result.stderr
    calls = {f["name"]: f["calls"] for f in report["functions"] if f["file"] == str(PROGRAM)}
    assert calls["work"] == 1001
    assert calls["main"] == 1
    assert report["dropped"] == 0
