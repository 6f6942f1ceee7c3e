"""`ulma history prune --before TIME`: retention by whole days.  Rows the test put in itself three
days back (functions, edges, objects) go; the run of today stays whole (its top still the run's
report), on chDB, a server and every shard of the two-shard cluster."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_process, ulma_command
from tests.history.conftest import need_chdb, need_server

PROGRAM = Path(__file__).with_name("fleet_program.py")
DAY = 86_400


def history(dsn: str, *args: str) -> dict[str, Any]:
    result = run_process(ulma_command(["history", *args, "--dsn", dsn, "--json"]), timeout=60)
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


OLD_ROWS = """
import sys
from ulma.history.dsn import parse
from ulma.history.store import EDGE_COLUMNS, FUNCTION_COLUMNS, OBJECT_COLUMNS, open_store

store = open_store(parse(sys.argv[1]), create=True)
try:
    base = (int(sys.argv[2]), "oldhost", 7, "old-run")
    store.insert("functions", FUNCTION_COLUMNS,
                 [(*base, "ancient", "/old.py", n, 5, 500, 400, 300, 50, 150, 0, 250, 100, 50)
                  for n in range(1, 41)])
    store.insert("edges", EDGE_COLUMNS, [(*base, "caller", "/old.py", 1, "ancient", "/old.py", 2, 5, 500)])
    store.insert("objects", OBJECT_COLUMNS, [(*base, "Relic", 9, 3, 0, 96)])
finally:
    store.close()
"""


def old_rows(dsn: str, at: int) -> None:
    """Rows of a run `at` (three days back), as a writer would have put them -- from a process of
    their own: chDB in the test's process would block signals in its thread, which every program
    a later test starts would inherit."""
    done = run_process([sys.executable, "-c", OLD_ROWS, dsn, str(at)], timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.fixture(params=["chdb", "server", "cluster"])
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "chdb":
        need_chdb()
        return f"chdb:{tmp_path / 'history'}"
    need_server()
    cluster = request.getfixturevalue("cluster")
    db = f"prune_{request.node.name.rsplit('[', 1)[-1].rstrip(']')}_{int(time.time() * 1000) % 10**9}"
    if request.param == "server":
        return f"clickhouse://127.0.0.1:{cluster.ports[1]}/{db}"
    dsn: str = cluster.dsn(db)
    return dsn


def test_prune_drops_the_days_before_and_keeps_todays_run_whole(dsn: str, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    ran = run_process(ulma_command(["run", "--history", dsn, "--objects", "--no-report", "--json",
                                    str(report), str(PROGRAM)]), cwd=tmp_path, timeout=120)
    assert ran.returncode == 0, ran.stderr
    now = int(time.time())
    old_rows(dsn, now - 3 * DAY)
    before = history(dsn, "top", "--limit", "0")["functions"]
    assert [f["line"] for f in before if f["name"] == "ancient"] == list(range(1, 41))
    kept = {(f["name"], f["file"], f["line"]): f["calls"] for f in before if f["name"] != "ancient"}

    # nothing is a whole day older than two days ago but the old run
    said = history(dsn, "prune", "--before", "2d")
    days = {d["day"] for d in said["dropped"]}
    assert len(days) == 1 and {d["table"] for d in said["dropped"]} == {"functions", "edges", "objects"}, said
    assert sum(d["rows"] for d in said["dropped"] if d["table"] == "functions") == 40, said

    after = history(dsn, "top", "--limit", "0")["functions"]
    assert {(f["name"], f["file"], f["line"]): f["calls"] for f in after} == kept
    local = json.loads(report.read_text())
    work = next(f for f in local["functions"] if f["name"] == "work")
    assert kept[("work", work["file"], work["line"])] == work["calls"] == 1000
    assert "Relic" not in {t["name"] for t in history(dsn, "types", "--limit", "0")["types"]}
    result = run_process(ulma_command(["history", "callers", "ancient", "--dsn", dsn]), timeout=60)
    assert result.returncode == 1 and "no calls of 'ancient'" in result.stderr, result.stderr
    # and again: nothing more to drop
    assert history(dsn, "prune", "--before", "2d")["dropped"] == []
