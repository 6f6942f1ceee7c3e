"""The agent's footprint: when the program's first line runs, ulma has loaded only its own C core and a
small bootstrap, so the program's own imports happen (and are profiled) as under plain python.

Ground truth is plain python: the same program prints what sys.modules holds at its first line."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "show_modules.py"
MAX_EXTRA_STDLIB = 5

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]
UlmaJson = Callable[..., tuple[Completed, dict[str, Any]]]


def _modules(result: Completed, describe: Callable[[Completed], str]) -> set[str]:
    assert result.returncode == 0, describe(result)
    loaded: list[str] = json.loads(result.stdout)["modules"]
    return set(loaded)


def test_the_program_starts_with_at_most_five_standard_modules_more_than_under_python(
    engine_flags: list[str], run_python: RunFn, run_ulma: RunFn, describe: Callable[[Completed], str]
) -> None:
    plain = _modules(run_python([str(PROGRAM)]), describe)
    profiled = _modules(run_ulma(["run", *engine_flags, "--no-report", str(PROGRAM)]), describe)
    extra = profiled - plain
    ours = sorted(m for m in extra if m == "ulma" or m.startswith("ulma."))
    stdlib = sorted(m for m in extra if m not in ours)
    assert len(stdlib) <= MAX_EXTRA_STDLIB, f"standard modules loaded by ulma: {stdlib} (and ulma's: {ours})"
    assert "json" not in profiled


def test_a_standard_module_the_program_imports_has_its_import_time_calls_profiled(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str]
) -> None:
    """json makes its default encoder and decoder when it is imported: each __init__ runs once."""
    result, report = ulma_json([*engine_flags, "--no-report", str(PROGRAM)])
    assert result.returncode == 0, describe(result)
    calls = {(Path(fn["file"]).parent.name, Path(fn["file"]).name, fn["name"]): fn["calls"]
             for fn in report["functions"]}
    assert calls.get(("json", "__init__.py", "<module>")) == 1, sorted(calls)[:40]
    assert calls.get(("json", "encoder.py", "JSONEncoder.__init__")) == 1
    assert calls.get(("json", "decoder.py", "JSONDecoder.__init__")) == 1


# ulma's command line, run in a process that prints what it imported once the run is over
MONITOR_MODULES = ("import atexit, json, runpy, sys\n"
                   "atexit.register(lambda: sys.stdout.write(json.dumps(sorted(sys.modules))))\n"
                   "sys.argv = ['ulma'] + sys.argv[1:]\n"
                   "runpy.run_module('ulma', run_name='__main__', alter_sys=True)\n")
# what only a trace file, a printed report, the live view or the type checker needs
NOT_FOR_A_PLAIN_RUN = ("rich", "textual", "zstandard", "ulma.format.trace", "ulma.views.report",
                       "ulma.views.live", "ulma.views.live_rows", "dataclasses", "inspect", "typing",
                       "shutil")


def test_ulma_run_without_report_or_trace_imports_no_report_trace_or_typing_modules(
    engine_flags: list[str], run_python: RunFn, tmp_path: Path, describe: Callable[[Completed], str]
) -> None:
    empty = tmp_path / "empty.py"
    empty.write_text("")
    baseline = run_python(["-c", "import json, sys; sys.stdout.write(json.dumps(sorted(sys.modules)))"])
    result = run_python(["-c", MONITOR_MODULES, "run", *engine_flags, "--no-report", str(empty)])
    assert result.returncode == 0 and baseline.returncode == 0, describe(result)
    loaded = set(json.loads(result.stdout)) - set(json.loads(baseline.stdout))
    heavy = sorted(m for m in loaded if m in NOT_FOR_A_PLAIN_RUN or m.split(".")[0] in NOT_FOR_A_PLAIN_RUN)
    assert heavy == [], f"`ulma run --no-report` imported {heavy}"
