"""Exports stream: converting a trace holds stacks, functions and threads in memory, never the
event stream. Checked with tracemalloc on a synthetic trace written by the real TraceWriter."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from ulma.exporters.base import FORMATS, export
from ulma.format import records, trace
from ulma.format.records import Event

EVENTS_PER_THREAD = 80_000
PEAK_LIMIT = 8 << 20  # the events alone are 2.5 MB packed, and many times that as Python objects


def write_trace(path: Path, threads: int = 2) -> None:
    """main(1) runs a loop calling a(2), which recurses into b(3) three deep; one such program per thread."""
    w = trace.TraceWriter(str(path), {"start_ticks": 0, "python": "synthetic"})
    w.symbols([trace.SymbolDef(fid, 1, 0, name, "/src/prog.py", fid * 10)
               for fid, name in ((1, "main"), (2, "a"), (3, "b"))])
    t = 0
    for thread in range(threads):
        events = [Event(t, 1, records.CALL, 0, 0)]
        for _ in range((EVENTS_PER_THREAD - 2) // 8):
            for fid in (2, 3, 3, 3):
                t += 3
                events.append(Event(t, fid, records.CALL, 0, 0))
            for fid in (3, 3, 3, 2):
                t += 5
                events.append(Event(t, fid, records.RETURN, 0, 0))
            if len(events) >= 8192:
                w.events(thread, records.encode(events))
                events.clear()
        events.append(Event(t + 1, 1, records.RETURN, 0, 0))
        w.events(thread, records.encode(events))
    w.close({"ns_per_tick": 1.0, "wall_ns": t, "program_pid": 4242,
             "os_tid": {str(i): 4242 + i for i in range(threads)}, "dropped": {}})


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synthetic") / "big.ulma"
    write_trace(path)
    return path


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_export_memory_stays_bounded_whatever_the_trace_length(
        fmt: str, synthetic: Path, tmp_path: Path) -> None:
    out = tmp_path / f"out.{fmt}"
    tracemalloc.start()
    try:
        run = export(str(synthetic), fmt, str(out))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not run.warnings
    assert sum(run.events.values()) >= 2 * (EVENTS_PER_THREAD - 8)
    assert run.os_tids == {0: 4242, 1: 4243}
    assert out.stat().st_size > 100
    assert peak < PEAK_LIMIT, f"{fmt}: {peak / 1e6:.1f} MB at the peak"
