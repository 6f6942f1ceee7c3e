"""--history with the live views and with --to: `ulma run --web --history` writes the run's report
into the history while the page is served (no page opened: the program runs and ends by itself);
--to and --history at once, on a run and on an attachment, give the collector and the history both
the report's figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import agent_target, run_process, ulma_command
from tests.fleet.helpers import Collector, calls, env, processes, ulma_lines
from tests.history.test_history import FIELDS, PROGRAM, Key, report_figures

ATTACHED = Path(__file__).with_name("attach_program.py")


def history_top(dsn: str, *args: str) -> dict[Key, dict[str, int]]:
    result = run_process(ulma_command(["history", "top", "--limit", "0", "--json", "--dsn", dsn, *args]),
                         timeout=60)
    assert result.returncode == 0, result.stderr
    return {(f["name"], f["file"], f["line"]): {k: f[k] for k in FIELDS}
            for f in json.loads(result.stdout)["functions"]}


def run_id(stderr: str) -> str:
    (said,) = [line for line in stderr.splitlines() if line.startswith("ulma: history:")]
    return said.split(" of run ")[1].split()[0]


def ulma_run(args: list[str], tmp: Path) -> tuple[str, dict[str, Any]]:
    """`ulma run ARGS PROGRAM` (the web view never opened in a browser): its stderr and --json."""
    report = tmp / "report.json"
    result = run_process(ulma_command(["run", "--no-report", "--json", str(report), *args, str(PROGRAM)]),
                         cwd=tmp, env=env(ULMA_NO_BROWSER="1"), timeout=120)
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(report.read_text())
    return result.stderr, found


def test_run_web_history_writes_the_report(chdb_dir: Path, tmp_path: Path) -> None:
    dsn = f"chdb:{chdb_dir}"
    err, report = ulma_run(["--web", "--history", dsn], tmp_path)
    assert any(line.startswith("ulma: web view at http://127.0.0.1:") for line in ulma_lines(err)), err
    got = history_top(dsn, "--run", run_id(err))
    assert got == report_figures(report)
    assert {key[0]: f["calls"] for key, f in got.items()}["work"] == 1000


@pytest.mark.parametrize("view", ["--no-live", "--web"])
def test_to_and_history_at_once_both_get_the_report(chdb_dir: Path, tmp_path: Path, view: str) -> None:
    dsn = f"chdb:{chdb_dir}"
    collector = Collector(tmp_path, events=False)
    try:
        err, report = ulma_run([view, "--to", collector.address, "--history", dsn], tmp_path)
        _, _, doc = collector.stop()
    finally:
        collector.kill()
    assert any(line.startswith("ulma: streamed ") for line in ulma_lines(err)), err
    (row,) = processes(doc)
    assert row["finished"], row
    assert calls(row["functions"]) == calls(report["functions"])
    assert history_top(dsn, "--run", run_id(err)) == report_figures(report)


def test_attach_to_and_history_at_once_both_get_the_report(chdb_dir: Path, tmp_path: Path) -> None:
    dsn = f"chdb:{chdb_dir}"
    collector = Collector(tmp_path, events=False)
    report = tmp_path / "r.json"
    try:
        with agent_target(ATTACHED, tmp_path) as target:
            result = run_process(ulma_command(["attach", "--to", collector.address, "--history", dsn,
                                               "--duration", "2", "--no-live", "--no-report", "--json",
                                               str(report), str(target.proc.pid)]), env=env(), timeout=120)
            code, _, target_err = target.finish()
        _, _, doc = collector.stop()
    finally:
        collector.kill()
    assert result.returncode == 0, result.stderr
    assert code == 0, target_err
    local = json.loads(report.read_text())
    (row,) = processes(doc)
    assert row["finished"], row
    assert calls(row["functions"]) == calls(local["functions"])
    expected = report_figures(local)
    assert {key[0]: f["calls"] for key, f in expected.items()}["tick"] > 100
    assert history_top(dsn, "--run", run_id(result.stderr)) == expected
