"""The engine-parametrized tests run the default engine once, without an
--engine flag (conftest.available_engines); here it is named on the command
line too, and the run is the same: the same engine, the same exact counts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

Completed = CompletedProcess[str]
RunFn = Callable[..., Completed]

PROGRAM = "def f():\n    pass\n\n\nfor _ in range(1000):\n    f()\n"


def test_the_default_engine_named_on_the_command_line_is_the_engine_used_without_a_flag(
    run_ulma: RunFn, tmp_path: Path, describe: Callable[[Completed], str]
) -> None:
    program = tmp_path / "calls.py"
    program.write_text(PROGRAM)
    default = "monitoring" if sys.version_info >= (3, 12) else "pep523"
    reports = []
    for n, flags in enumerate(([], ["--engine", default])):
        out = tmp_path / f"report{n}.json"
        result = run_ulma(["run", *flags, "--no-live", "--no-report", "--json", str(out), str(program)])
        assert result.returncode == 0, describe(result)
        reports.append(json.loads(out.read_text()))
    assert [r["engine"] for r in reports] == [default, default]
    assert [[f["calls"] for f in r["functions"] if f["name"] == "f"] for r in reports] == [[1000], [1000]]
