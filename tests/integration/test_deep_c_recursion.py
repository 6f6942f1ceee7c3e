"""Deep Python recursion that keeps entering deep C recursion behaves under ulma exactly as under python.

programs/deep_c_recursion.py recurses 60 000 Python frames deep and, every 6 000 frames, runs repr() and
json.dumps() of lists nested up to 9 000 deep (near CPython's C recursion limit, past it on 3.12); at the
deepest frame it blocks a signal with pthread_sigmask and prints the mask again after returning; in the
main thread and in a second thread. The PEP 523 engine runs deep frames on stack segments of its own: they
must leave C recursion as much room as python gives it (no crash, RecursionError at the same nesting) and
the stack switch must not put back the signal mask the frame had when it started.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "deep_c_recursion.py"

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]


def test_deep_c_recursion_and_signal_mask_match_plain_python(
    engine_flags: list[str],
    run_python: RunFn,
    run_ulma: RunFn,
    describe: Callable[[Completed], str],
) -> None:
    plain = run_python([str(PROGRAM)], cwd=PROGRAMS_DIR)
    assert plain.returncode == 0, describe(plain)
    assert "after return blocked [10]" in plain.stdout, describe(plain)  # SIGUSR1 stays blocked
    profiled = run_ulma(["run", *engine_flags, "--no-report", str(PROGRAM)], cwd=PROGRAMS_DIR)
    assert profiled.returncode == plain.returncode, describe(profiled)
    assert profiled.stdout == plain.stdout, describe(profiled)
