"""The agent's own descriptors never hurt the program's."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"

Completed = subprocess.CompletedProcess[str]


def test_a_descriptor_number_the_program_reused_is_not_closed_when_a_thread_ends(
    engine_flags: list[str], run_ulma: Callable[..., Completed],
) -> None:
    result = run_ulma(["run", *engine_flags, "--no-report", str(PROGRAMS_DIR / "closes_fds.py")],
                      cwd=PROGRAMS_DIR)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "pipe ok\n"
