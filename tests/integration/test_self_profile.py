"""The monitor monitoring itself, and scopes from Python: `ulma run --self-profile TRACE` keeps a
trace of ulma's own monitor (its Python functions, its C core's phases as native scopes), read
back with `ulma report`; `ulma attach -o TRACE` keeps an attachment's event stream; ulma.phases
marks a program's own phases."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import run_process, ulma_command

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"

Completed = subprocess.CompletedProcess[str]
UlmaJson = Callable[..., tuple[Completed, dict[str, Any]]]


def report_of(trace: Path, tmp_path: Path, describe: Callable[[Completed], str]) -> dict[str, Any]:
    out = tmp_path / f"{trace.stem}.json"
    made = run_process(ulma_command(["report", str(trace), "--json", str(out)]))
    assert made.returncode == 0, describe(made)
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def by_name(report: dict[str, Any], name: str, file_end: str) -> list[tuple[int, dict[str, Any]]]:
    return [(i, f) for i, f in enumerate(report["functions"])
            if f["name"] == name and f["file"].endswith(file_end)]


def test_self_profile_shows_the_monitors_phases_nested_in_its_own_functions(
    tmp_path: Path, ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    program = PROGRAMS_DIR / "phased.py"
    monitor_trace, program_trace = tmp_path / "monitor.ulma", tmp_path / "program.ulma"
    result, report = ulma_json(["--no-report", "--self-profile", str(monitor_trace), "-o", str(program_trace),
                                str(program), "20000"], cwd=tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout) == {"parsed": 20000}, describe(result)
    # the program's own profile is as without --self-profile
    assert [f["calls"] for _, f in by_name(report, "parse", "phased.py")] == [20000]
    monitor = report_of(monitor_trace, tmp_path, describe)
    ((drain_i, drain),) = by_name(monitor, "drain", "module.c")
    ((session_drain_i, session_drain),) = by_name(monitor, "Session.drain", "session.py")
    # every drain of the run (one C call each) is one scope, inside the Python method
    assert drain["calls"] == session_drain["calls"] > 0, (drain, session_drain)
    assert any(e["caller"] == session_drain_i and e["callee"] == drain_i and e["calls"] == drain["calls"]
               for e in monitor["edges"])
    assert session_drain["total_ns"] >= drain["total_ns"] > 0
    # the snapshot the report was made from, and the program's trace being written and compressed
    assert sum(f["calls"] for _, f in by_name(monitor, "snapshot", "module.c")) >= 1
    assert sum(f["calls"] for _, f in by_name(monitor, "trace write", "trace.py")) >= 2
    assert sum(f["calls"] for _, f in by_name(monitor, "compress", "trace.py")) >= 1
    assert monitor["dropped"] == 0


def test_python_code_marks_its_phases_as_scopes_with_exact_counts(
    ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    n = 3000
    result, report = ulma_json(["--no-report", str(PROGRAMS_DIR / "phased.py"), str(n)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    ((load_i, load),) = by_name(report, "load", "phased.py")
    ((loading_i, loading),) = by_name(report, "loading", "phased.py")
    ((parsing_i, parsing),) = by_name(report, "parsing", "phased.py")
    ((parse_i, parse),) = by_name(report, "parse", "phased.py")
    assert (load["calls"], loading["calls"], parsing["calls"], parse["calls"]) == (1, 1, n, n)
    edges = {(e["caller"], e["callee"]): e["calls"] for e in report["edges"]}
    assert edges.get((load_i, loading_i)) == 1 and edges.get((loading_i, parsing_i)) == n
    assert edges.get((parsing_i, parse_i)) == n and (load_i, parse_i) not in edges


def test_attach_keeps_its_event_stream_in_a_trace_that_reports_as_the_attachment_did(
    tmp_path: Path, describe: Callable[[Completed], str],
) -> None:
    from tests.integration.test_inject import PlainTarget, attached_phase, calls_of

    target = PlainTarget(tmp_path, "sleep")
    try:
        trace = tmp_path / "attached.ulma"
        attached = attached_phase(target, 500, tmp_path / "attached.json", extra=["-o", str(trace)])
    finally:
        target.kill()
    live = attached.report
    offline = report_of(trace, tmp_path, describe)
    assert calls_of(live, "marked") == 500
    assert calls_of(offline, "marked") == calls_of(live, "marked")
    def counts(report: dict[str, Any]) -> dict[str, int]:
        return {f["name"]: f["calls"] for f in report["functions"] if f["file"].endswith("plain_target.py")}

    assert counts(offline) == counts(live)
