"""Crafted traces of a few KB cannot make `ulma report` or an export slow or big.

Each command runs in a subprocess of its own under an address-space limit of 1 GiB and a generous
hard timeout; the tests assert on what a user reads (the JSON report, the exported file), never on
time.  Ground truth is the crafted stream itself: how many calls it holds.
"""

from __future__ import annotations

import json
import marshal
import os
import resource
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import subprocess_env, ulma_command
from tests.hostile_traces import SANITIZED
from ulma.exporters.base import FORMATS
from ulma.format import records, trace
from ulma.format.records import Event

LIMIT_AS = 1 << 30
HARD_TIMEOUT = 120.0  # the old quadratic replay took report past 120 s on the unmatched trace
CALL, RETURN = records.CALL, records.RETURN
DEEP = 300_000


def bounded(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """Runs cmd under RLIMIT_AS = 1 GiB.  Fails the test if it still runs after HARD_TIMEOUT."""

    def limit() -> None:
        if not SANITIZED:  # (tests/hostile_traces.py)
            resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env(), preexec_fn=limit, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=HARD_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{' '.join(cmd)} still ran after {HARD_TIMEOUT:.0f} s")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def write(path: Path, threads: dict[int, list[Event]], names: dict[int, str]) -> Path:
    w = trace.TraceWriter(str(path), {"start_ticks": 0, "python": "crafted"})
    w.symbols([trace.SymbolDef(fid, 1, 0, name, "/crafted.py", fid) for fid, name in names.items()])
    for thread, events in threads.items():
        for at in range(0, len(events), trace.EVENTS_PER_CHUNK):
            w.events(thread, records.encode(events[at:at + trace.EVENTS_PER_CHUNK]))
    w.close({"ns_per_tick": 1.0, "wall_ns": 1000, "program_pid": 1, "os_tid": {}, "dropped": {}})
    return path


@pytest.fixture(scope="module")
def unmatched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """f(1) called 300 000 times, nested, then 300 000 returns of g(2), which never ran."""
    events = [Event(i, 1, CALL, 0, 0) for i in range(DEEP)]
    events += [Event(DEEP + i, 2, RETURN, 0, 0) for i in range(DEEP)]
    return write(tmp_path_factory.mktemp("crafted") / "unmatched.ulma", {0: events}, {1: "f", 2: "g"})


BIG_ID = (1 << 24) - 2


@pytest.fixture(scope="module")
def big_id(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One call of the largest id the replay takes, on each of 12 threads."""
    return write(tmp_path_factory.mktemp("crafted") / "big_id.ulma",
                 {thread: [Event(1, BIG_ID, CALL, 0, 0)] for thread in range(12)}, {BIG_ID: "big"})


def report(path: Path, tmp_path: Path) -> dict[str, dict[str, int]]:
    """`ulma report --json` of the trace: function name -> its row."""
    out = tmp_path / "report.json"
    result = bounded(ulma_command(["report", str(path), "--json", str(out)]))
    assert result.returncode == 0, result.stderr
    return {f["name"]: f for f in json.loads(out.read_text())["functions"]}


def test_returns_of_a_function_never_called_do_not_stall_the_report(unmatched: Path, tmp_path: Path) -> None:
    functions = report(unmatched, tmp_path)
    assert functions["f"]["calls"] == DEEP
    assert "g" not in functions


def test_one_call_of_the_largest_id_on_12_threads_reports_12_calls(big_id: Path, tmp_path: Path) -> None:
    assert report(big_id, tmp_path)["big"]["calls"] == 12


def export(path: Path, fmt: str, tmp_path: Path) -> Path:
    out = tmp_path / f"out.{fmt}"
    result = bounded(ulma_command(["export", str(path), "--format", fmt, "-o", str(out)]))
    assert result.returncode == 0, result.stderr
    return out


# What each format says about f's calls, read back from the file.
def chrome_calls(out: Path) -> int:
    return sum(1 for e in json.loads(out.read_text()) if e.get("name") == "f" and e["ph"] == "X")


def speedscope_calls(out: Path) -> int:
    doc = json.loads(out.read_text())
    f = next(i for i, frame in enumerate(doc["shared"]["frames"]) if frame["name"] == "f")
    return sum(1 for p in doc["profiles"] for e in p["events"] if e["type"] == "O" and e["frame"] == f)


def pstats_calls(out: Path) -> int:
    stats = marshal.loads(out.read_bytes())
    return int(stats[("/crafted.py", 1, "f")][1])


def text_calls(out: Path) -> int:
    with out.open() as lines:
        return sum(1 for line in lines if line.split("\t")[3:5] == ["call", "f"])


COUNTS: dict[str, Callable[[Path], int]] = {
    "chrome": chrome_calls, "speedscope": speedscope_calls, "pstats": pstats_calls, "text": text_calls}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_returns_of_a_function_never_called_do_not_stall_an_export(
        fmt: str, unmatched: Path, tmp_path: Path) -> None:
    out = export(unmatched, fmt, tmp_path)
    assert out.stat().st_size > 0
    count = COUNTS.get(fmt)
    if count is not None:
        assert count(out) == DEEP


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_one_call_of_the_largest_id_on_12_threads_exports(fmt: str, big_id: Path, tmp_path: Path) -> None:
    out = export(big_id, fmt, tmp_path)
    assert out.exists()  # collapsed is empty: the calls took no time
    if fmt == "pstats":
        assert marshal.loads(out.read_bytes())[("/crafted.py", BIG_ID, "big")][1] == 12


def short_threads(path: Path, threads: int) -> Path:
    """`threads` threads, each calling main(1) -> work(2) -> leaf(3) once."""
    out = {}
    t = 0
    for thread in range(threads):
        events = []
        for fid in (1, 2, 3):
            events.append(Event(t, fid, CALL, 0, 0))
            t += 5
        for fid in (3, 2, 1):
            events.append(Event(t, fid, RETURN, 0, 0))
            t += 5
        out[thread] = events
    return write(path, out, {1: "main", 2: "work", 3: "leaf"})


def peak_kib(cmd: list[str]) -> int:
    """Peak resident KiB of one run of cmd (wait4's figure for that child alone)."""

    def limit() -> None:
        if not SANITIZED:  # (tests/hostile_traces.py)
            resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=subprocess_env(),
                            preexec_fn=limit, start_new_session=True)
    timer = threading.Timer(HARD_TIMEOUT, os.killpg, (proc.pid, signal.SIGKILL))
    timer.start()
    try:
        _pid, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited with {proc.returncode}"
    return usage.ru_maxrss


def test_the_report_of_a_trace_of_many_short_threads_stays_small(tmp_path: Path) -> None:
    # 2000 and then 8000 short threads: what the 6000 more cost must stay under 4 KiB each (the
    # report kept every thread's tables, ~65 KiB each: 20 000 threads took 1.3 GB)
    peaks = []
    for threads in (2000, 8000):
        path = short_threads(tmp_path / f"t{threads}.ulma", threads)
        peaks.append(peak_kib(ulma_command(["report", str(path)])))
    assert peaks[1] - peaks[0] < 6000 * 4, f"{peaks[0]} KiB, then {peaks[1]} KiB"


def test_object_records_of_more_pairs_than_the_table_keeps_are_all_counted_in_one_row(tmp_path: Path) -> None:
    # every OBJ_NEW record a (function, type) pair of its own: the replay kept a row for each (a
    # crafted trace's memory then grew with its records); past OBJ_MAX_ROWS they add up in one row
    past = 1000
    n = records.OBJ_MAX_ROWS + past
    events = [Event(1, 1, CALL, 0, 0)]
    events += [Event(2 + i, 2 + i // 60_000, records.OBJ_NEW, 0, 1 + i % 60_000) for i in range(n)]
    events.append(Event(n + 3, 1, RETURN, 0, 0))
    path = write(tmp_path / "pairs.ulma", {0: events}, {1: "f"})
    out = tmp_path / "report.json"
    result = bounded(ulma_command(["report", str(path), "--json", str(out)]))
    assert result.returncode == 0, result.stderr
    types = json.loads(out.read_text())["types"]
    assert sum(t["created"] for t in types) == n  # nothing lost
    assert sum(len(t["by_function"]) for t in types) == records.OBJ_MAX_ROWS
    beyond = [t for t in types if not t["by_function"]]
    assert [t["created"] for t in beyond] == [past], [t["name"] for t in beyond]
    assert "past" in beyond[0]["name"]
