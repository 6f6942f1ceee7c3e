"""Other tools in the same program: the program's own profilers and monitoring tools work under ulma as
under python, and ulma's counts stay exact.

programs/other_tools.py runs cProfile on itself, sets its own sys.setprofile function (main thread, and a
thread through threading.setprofile), and on 3.12+ registers its own sys.monitoring tools at DEBUGGER_ID,
COVERAGE_ID, PROFILER_ID and OPTIMIZER_ID. It prints what its tools counted and how many calls it made.
Under ulma, with every engine, with and without --native-calls: the same stdout and exit code as python,
ulma's calls of `leaf` and `work` are what the program made, ulma says which sys.monitoring tool id it took
(3 or 4, never one a standard tool expects), and that the program's profile function took over in two
threads where ulma traced calls into C with a profile function of its own (PEP 523 with --native-calls).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "other_tools.py"

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]
UlmaJson = Callable[..., tuple[Completed, dict[str, Any]]]


@pytest.mark.parametrize("native", [False, True], ids=["python-calls", "native-calls"])
def test_programs_own_profilers_and_monitoring_tools_work_and_ulma_counts_stay_exact(
    native: bool,
    engine: str,
    engine_flags: list[str],
    run_python: RunFn,
    ulma_json: UlmaJson,
    describe: Callable[[Completed], str],
) -> None:
    plain = run_python([str(PROGRAM)], cwd=PROGRAMS_DIR)
    assert plain.returncode == 3, describe(plain)
    made = re.search(r"made leaf (\d+), work (\d+)", plain.stdout)
    assert made, describe(plain)
    flags = [*engine_flags, *(["--native-calls"] if native else [])]
    result, report = ulma_json([*flags, str(PROGRAM)], cwd=PROGRAMS_DIR)
    assert result.returncode == plain.returncode, describe(result)
    assert result.stdout == plain.stdout, describe(result)
    calls = {f["name"]: f["calls"] for f in report["functions"] if Path(f["file"]).name == PROGRAM.name}
    assert calls.get("leaf") == int(made.group(1)), (calls, describe(result))
    assert calls.get("work") == int(made.group(2)), (calls, describe(result))
    assert report["dropped"] == 0
    if report["engine"] == "monitoring":
        assert report["tool_id"] in (3, 4), report["tool_id"]
        assert f"sys.monitoring tool id {report['tool_id']}" in result.stderr, describe(result)  # the report
        assert report["hooks_displaced"] == 0
    else:
        assert report["tool_id"] is None
        # the program's sys.setprofile (cProfile too on 3.11) replaced ulma's C profile function in its
        # main thread and in the thread it started with threading.setprofile
        assert report["hooks_displaced"] == (2 if native else 0), describe(result)
        if native:
            assert "took over from ulma's 2 times" in result.stderr, describe(result)  # the report
