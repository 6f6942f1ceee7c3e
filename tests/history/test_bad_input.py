"""Bad input to --history and `ulma history`: one clear line, no traceback.  A history that
cannot be written never costs the program its run or its report."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.conftest import run_process, ulma_command
from tests.history.conftest import need_chdb, need_server

PROGRAM = Path(__file__).with_name("fleet_program.py")


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def marker_program(tmp_path: Path) -> Path:
    """A program that leaves a file `ran` beside it."""
    path = tmp_path / "prog.py"
    path.write_text("open(__file__[:-len('prog.py')] + 'ran', 'w').close()\n")
    return path


@pytest.mark.parametrize(("dsn", "said"), [
    ("clickhouse://127.0.0.1:notaport/ulma", "malformed history DSN"),
    ("clickhouse:///ulma", "no host"),
    ("clickhouse://127.0.0.1/bad-name", "is not a database name"),
    ("clickhouse://127.0.0.1/ulma?clustr=x", "unknown parameter 'clustr'"),
    ("clickhouse://127.0.0.1/ulma?cluster=a;b", "is not a cluster name"),
    ("mysql://127.0.0.1/ulma", "give clickhouse://"),
    ("chdb://", "chdb:PATH needs a directory"),
])
def test_a_malformed_dsn_is_one_line_before_anything_runs(dsn: str, said: str, marker_program: Path) -> None:
    result = run_process(ulma_command(["run", "--history", dsn, str(marker_program)]),
                         cwd=marker_program.parent, timeout=60)
    line = one_line(result.stderr)
    assert result.returncode == 2 and line.startswith("ulma: error: ") and said in line, result.stderr
    assert not (marker_program.parent / "ran").exists()
    # the same DSN to `ulma history`
    result = run_process(ulma_command(["history", "top", "--dsn", dsn]), timeout=60)
    assert result.returncode == 2 and said in one_line(result.stderr)


def test_an_unreachable_server_costs_the_run_nothing_but_its_history(tmp_path: Path) -> None:
    need_server()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    report = tmp_path / "r.json"
    dsn = f"clickhouse://127.0.0.1:{port}/ulma"
    result = run_process(ulma_command(["run", "--history", dsn, "--no-report", "--json", str(report),
                                       str(PROGRAM)]), timeout=120)
    assert result.returncode == 0, result.stderr
    line = one_line(result.stderr)
    assert line.startswith("ulma: history failed: ") and f"127.0.0.1:{port}" in line
    assert result.stdout.strip() == str(sum(2 * i for i in range(1000)))  # the program ran through
    calls = {f["name"]: f["calls"] for f in json.loads(report.read_text())["functions"]}
    assert calls["work"] == 1000
    result = run_process(ulma_command(["history", "top", "--dsn", f"clickhouse://127.0.0.1:{port}/ulma"]),
                         timeout=60)
    assert result.returncode == 1 and f"127.0.0.1:{port}" in one_line(result.stderr)


def test_a_cluster_the_server_does_not_know_is_said(cluster: object, tmp_path: Path) -> None:
    from ulma.history.localcluster import LocalCluster

    assert isinstance(cluster, LocalCluster)
    dsn = f"clickhouse://127.0.0.1:{cluster.ports[0]}/ulma?cluster=nosuch"
    result = run_process(ulma_command(["run", "--history", dsn, "--no-report", str(PROGRAM)]), timeout=120)
    assert result.returncode == 0
    assert "knows no cluster 'nosuch'" in one_line(result.stderr)


def test_history_questions_without_an_answer(tmp_path: Path) -> None:
    need_chdb()
    empty = f"chdb:{tmp_path / 'none'}"
    result = run_process(ulma_command(["history", "top", "--dsn", empty]), timeout=60)
    assert result.returncode == 1 and "no history in chDB" in one_line(result.stderr)
    assert not (tmp_path / "none").exists()  # asking makes nothing
    dsn = f"chdb:{tmp_path / 'h'}"
    ran = run_process(ulma_command(["run", "--history", dsn, "--no-report", str(PROGRAM)]), timeout=120)
    assert ran.returncode == 0, ran.stderr
    for args, said in ((["trend", "no_such_function"], "no function 'no_such_function' in the history"),
                       (["trend", "work", "--file", "elsewhere.py"], "no function 'work' in elsewhere.py"),
                       (["compare", "nope", "nope2"], "no run 'nope' in the history"),
                       (["top", "--since", "1h", "--until", "2h"], "--since is after --until")):
        result = run_process(ulma_command(["history", *args, "--dsn", dsn]), timeout=60)
        assert result.returncode == 1 and said in one_line(result.stderr), (args, result.stderr)


@pytest.mark.parametrize(("args", "said"), [
    ([], "ulma history needs one of top"),
    (["top", "--since", "yesterdayish"], "not a time: 'yesterdayish'"),
    (["top", "--limit", "-1"], "--limit must be 0 (all rows)"),
    (["compare", "a", "b", "--threshold", "-5"], "--threshold must be between 0 and"),
    (["trend", "f", "--step", "fortnight"], "invalid choice: 'fortnight'"),
    (["top", "--html", "/nonexistent-dir/t.html"], "cannot write --html /nonexistent-dir/t.html: No such"),
])
def test_bad_history_options_are_one_line(args: list[str], said: str) -> None:
    result = run_process(ulma_command(["history", *args]), timeout=60)
    assert result.returncode == 2 and said in one_line(result.stderr), result.stderr


def test_missing_chdb_is_said_in_one_line(marker_program: Path, tmp_path: Path) -> None:
    """Where chDB is not installed (here: hidden from the interpreter by a sitecustomize)."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['chdb'] = None\n")
    import os

    env = {"PYTHONPATH": os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")])}
    result = run_process(ulma_command(["run", "--history", str(marker_program)]), env=env, timeout=60)
    assert one_line(result.stderr) == "ulma: error: --history needs chDB: pip install 'ulma[history]'"
    assert result.returncode == 2 and not (marker_program.parent / "ran").exists()
    result = run_process(ulma_command(["history", "runs"]), env=env, timeout=60)
    assert one_line(result.stderr) == "ulma: error: ulma history needs chDB: pip install 'ulma[history]'"


def test_callers_of_a_function_never_called_is_one_line(tmp_path: Path) -> None:
    need_chdb()
    dsn = f"chdb:{tmp_path / 'h'}"
    ran = run_process(ulma_command(["run", "--history", dsn, "--no-report", str(PROGRAM)]), timeout=120)
    assert ran.returncode == 0, ran.stderr
    result = run_process(ulma_command(["history", "callers", "nobody", "--dsn", dsn]), timeout=60)
    assert result.returncode == 1 and "no calls of 'nobody' in the history" in one_line(result.stderr)
