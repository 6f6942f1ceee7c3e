"""`--to` with the live views: `ulma run --web --to` and `ulma attach PID --web --to` stream while
the page is served (no page opened: the program runs and ends by itself); what the collector shows is
what the run's own report says.  (The terminal view: tests/integration/test_live_cli.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import agent_target, run_process, ulma_command
from tests.fleet.helpers import TOKEN, Collector, calls, env, member, processes, run, trace_events, ulma_lines
from tests.fleet.test_stream import PROGRAM

ATTACHED = Path(__file__).resolve().parent.parent / "history" / "attach_program.py"


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "prog.py"
    path.write_text(PROGRAM)
    return path


def test_run_web_to_streams_what_the_report_says(tmp_path: Path, program: Path) -> None:
    collector = Collector(tmp_path)
    try:
        result = run(["--web", "--to", collector.address, "--to-send", "events", "--json",
                      str(tmp_path / "local.json"), "-o", str(tmp_path / "local.ulma"), str(program), "40"],
                     cwd=tmp_path, ULMA_NO_BROWSER="1")
        _, err, doc = collector.stop()
    finally:
        collector.kill()
    assert result.returncode == 0, result.stderr
    said = ulma_lines(result.stderr)
    assert any(line.startswith("ulma: web view at http://127.0.0.1:") for line in said), said
    assert any(line.startswith("ulma: streamed ") for line in said), said
    (row,) = processes(doc)
    local = json.loads((tmp_path / "local.json").read_text())
    assert row["finished"], row
    assert calls(row["functions"]) == calls(local["functions"])
    assert {k[0]: n for k, n in calls(local["functions"]).items()}["leaf"] == 40 * 50
    assert row["events"] == local["events"]
    assert row["events_received"] == trace_events(tmp_path / "local.ulma")
    assert trace_events(member(collector.trace, row["pid"])) == trace_events(tmp_path / "local.ulma")
    assert "refused" not in err


def test_attach_web_to_streams_what_the_report_says(tmp_path: Path) -> None:
    collector = Collector(tmp_path, events=False)
    report = tmp_path / "r.json"
    try:
        with agent_target(ATTACHED, tmp_path) as target:
            result = run_process(ulma_command(["attach", "--web", "--to", collector.address, "--duration",
                                               "2", "--no-report", "--json", str(report),
                                               str(target.proc.pid)]),
                                 env=env(ULMA_NO_BROWSER="1"), timeout=120)
            code, _, target_err = target.finish()
        _, _, doc = collector.stop()
    finally:
        collector.kill()
    assert result.returncode == 0, result.stderr
    assert code == 0, target_err
    said = ulma_lines(result.stderr)
    assert any(line.startswith("ulma: web view at http://127.0.0.1:") for line in said), said
    (row,) = processes(doc)
    assert row["finished"], row
    local = json.loads(report.read_text())
    assert calls(row["functions"]) == calls(local["functions"])
    assert {k[0]: n for k, n in calls(local["functions"]).items()}["tick"] > 100


def test_run_live_to_streams_what_the_report_says(tmp_path: Path) -> None:
    """The terminal view, on a pseudo-terminal of its own; the token from a file (the terminal's
    environment is the test's)."""
    from tests.integration.test_live_cli import HOT, REPORT, Terminal, after_view

    token = tmp_path / "token"
    token.write_text(TOKEN)
    report = tmp_path / "local.json"
    collector = Collector(tmp_path, events=False)
    try:
        with Terminal(["run", "--live", "--live-exit", "--to", collector.address, "--token-file", str(token),
                       "--json", str(report), str(HOT)]) as term:
            term.read_until("ulma ")  # the view's header
            assert term.wait() == 0, term.seen[-3000:]
            tail = after_view(term.seen)
        _, _, doc = collector.stop()
    finally:
        collector.kill()
    assert REPORT.search(tail) and "ulma: streamed " in tail, tail
    (row,) = processes(doc)
    assert row["finished"], row
    local = json.loads(report.read_text())
    assert calls(row["functions"]) == calls(local["functions"])
    assert row["events"] == local["events"]
