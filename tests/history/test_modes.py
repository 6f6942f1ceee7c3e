"""Where --history writes with no DSN, the ways to spell it, and `ulma attach --history`."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from tests.conftest import agent_target, run_process, ulma_command
from tests.history.conftest import need_chdb

PROGRAM = Path(__file__).with_name("fleet_program.py")
ATTACHED = Path(__file__).with_name("attach_program.py")


def calls(answer: dict[str, Any]) -> dict[str, int]:
    return {f["name"]: f["calls"] for f in answer["functions"]}


def test_no_dsn_is_the_embedded_chdb_under_xdg_data_home(tmp_path: Path) -> None:
    need_chdb()
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    # a bare --history before the program: the program is not taken for a DSN
    result = run_process(ulma_command(["run", "--history", "--no-report", str(PROGRAM)]), env=env,
                         timeout=120)
    assert result.returncode == 0, result.stderr
    where = tmp_path / "data" / "ulma" / "history"
    assert f"in chDB {where}" in result.stderr
    for d in (where, where.parent):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
    # the DSN spelled --history=chdb:PATH, and a module run: the same program counted in both
    other = tmp_path / "other"
    result = run_process(ulma_command(["run", f"--history=chdb:{other}", "--no-report", "-m",
                                       "fleet_program"]), cwd=PROGRAM.parent, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    answers = []
    for dsn in ([], ["--dsn", f"chdb:{other}"]):
        got = run_process(ulma_command(["history", "top", "--json", *dsn]), env=env, timeout=60)
        assert got.returncode == 0, got.stderr
        answers.append(calls(json.loads(got.stdout)))
    assert answers[0]["work"] == answers[1]["work"] == 1000


def test_attach_writes_history_that_is_its_report(tmp_path: Path) -> None:
    need_chdb()
    dsn = f"chdb:{tmp_path / 'h'}"
    report = tmp_path / "r.json"
    with agent_target(ATTACHED, tmp_path) as target:
        # the pid after a bare --history is the pid, not a DSN
        result = run_process(ulma_command(["attach", "--history", dsn, "--duration", "2.5", "--no-live",
                                           "--no-report", "--json", str(report), str(target.proc.pid)]),
                             timeout=120)
        code, _, err = target.finish()
    assert result.returncode == 0, result.stderr
    assert code == 0, err
    # every function that did anything while attached (main, still running, has time but no calls)
    expected = {f["name"]: (f["calls"], f["total_ns"]) for f in json.loads(report.read_text())["functions"]
                if f["calls"] or f["total_ns"]}
    assert expected["tick"][0] > 100
    got = run_process(ulma_command(["history", "top", "--json", "--dsn", dsn]), timeout=60)
    assert {f["name"]: (f["calls"], f["total_ns"]) for f in json.loads(got.stdout)["functions"]} == expected
    trend = json.loads(run_process(ulma_command(["history", "trend", "tick", "--json", "--dsn", dsn]),
                                   timeout=60).stdout)
    assert len(trend["points"]) >= 2 and sum(p["calls"] for p in trend["points"]) == expected["tick"][0]


def test_two_runs_at_once_into_one_chdb_both_land(tmp_path: Path) -> None:
    """chDB lets one process at a time open it: the second run spools its rows beside it and they
    are taken in when it is free -- no run loses its history, nothing but one line each is said."""
    import subprocess
    import time

    from tests.conftest import subprocess_env

    need_chdb()
    where = tmp_path / "h"
    dsn = f"chdb:{where}"
    first = subprocess.Popen(ulma_command(["run", "--history", dsn, "--no-report", "--json",
                                           str(tmp_path / "a.json"), str(PROGRAM)]),
                             env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.monotonic() + 30
        while not (where / "status").exists():  # the first has the chDB open
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        # a reader meanwhile: one line saying why not
        busy = run_process(ulma_command(["history", "runs", "--dsn", dsn]), timeout=60)
        assert busy.returncode == 1 and len(busy.stderr.splitlines()) == 1, busy.stderr
        assert f"is open in another ulma (pid {first.pid})" in busy.stderr
        second = run_process(ulma_command(["run", "--history", dsn, "--no-report", "--json",
                                           str(tmp_path / "b.json"), str(PROGRAM), "slow"]), timeout=120)
        _, first_err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0 and second.returncode == 0, (first_err, second.stderr)
    ids = []
    for err in (first_err, second.stderr):
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("ulma: history: "), err
        ids.append(lines[0].split(" of run ")[1].split()[0])
    runs = json.loads(run_process(ulma_command(["history", "runs", "--json", "--dsn", dsn]),
                                  timeout=60).stdout)
    assert sorted(r["run_id"] for r in runs["runs"]) == sorted(ids)
    for run_id, report in zip(ids, ("a.json", "b.json"), strict=True):
        expected = {f["name"]: f["calls"] for f in json.loads((tmp_path / report).read_text())["functions"]
                    if f["calls"]}
        got = run_process(ulma_command(["history", "top", "--json", "--dsn", dsn, "--run", run_id]),
                          timeout=60)
        assert {f["name"]: f["calls"] for f in json.loads(got.stdout)["functions"] if f["calls"]} == expected
    assert not list((tmp_path / "h.spool").glob("*.rows"))  # taken in, none left
