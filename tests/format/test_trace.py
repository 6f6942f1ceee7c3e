"""Trace files: what the writer writes the reader reads back, and damage of
any kind gives a clear error or a partial result with a warning."""

from __future__ import annotations

import struct
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from ulma.format import records, trace
from ulma.monitor.offline import load_profile

CALL, RETURN = records.CALL, records.RETURN


def write_sample(path: Path, *, compress: bool = True, calls: int = 5000) -> bytes:
    events = []
    for i in range(calls):
        events += [records.Event(100 + 10 * i, 1, CALL, 0, 0), records.Event(105 + 10 * i, 1, RETURN, 0, 0)]
    data = records.encode(events)
    meta = {"python": "3.x", "ns_per_tick": 0.5, "start_ticks": 0}
    w = trace.TraceWriter(str(path), meta, compress=compress)
    w.symbols([trace.SymbolDef(1, records.LAYOUT["SYM_PYFUNC"], 0, "work", "/src/work.py", 7)])
    half = len(data) // 2 // 16 * 16
    w.events(0, data[:half])
    w.events(0, data[half:])
    w.close({"wall_ns": 25_000, "ns_per_tick": 0.5, "dropped": {"0": 3}})
    return data


@pytest.mark.parametrize("compress", [True, False])
def test_the_reader_returns_what_the_writer_wrote(tmp_path: Path, compress: bool) -> None:
    path = tmp_path / "t.ulma"
    data = write_sample(path, compress=compress)
    reader = trace.TraceReader(str(path))
    events = b"".join(c.payload for c in reader.chunks() if c.kind == trace.EVENTS)
    assert events == data
    assert reader.symbols()[1].name == "work"
    assert reader.meta["python"] == "3.x"
    assert reader.end is not None and reader.end["dropped"] == {"0": 3}
    assert reader.warnings == []


def test_compression_pays_off_on_event_records(tmp_path: Path) -> None:
    small, big = tmp_path / "z.ulma", tmp_path / "raw.ulma"
    write_sample(small, compress=True)
    write_sample(big, compress=False)
    assert small.stat().st_size * 4 < big.stat().st_size


def test_a_report_from_the_file_has_exact_counts_and_calibrated_times(tmp_path: Path) -> None:
    path = tmp_path / "t.ulma"
    write_sample(path)
    profile = load_profile(trace.TraceReader(str(path)))
    (work,) = profile.functions
    assert (work.name, work.file, work.line, work.calls) == ("work", "/src/work.py", 7, 5000)
    assert work.total_ns == 5000 * 5 * 0.5  # ticks calibrated by the end record
    assert profile.dropped == 3


def test_the_file_is_private_to_the_user(tmp_path: Path) -> None:
    path = tmp_path / "t.ulma"
    write_sample(path)
    assert path.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_a_truncated_file_reads_up_to_its_last_whole_chunk_and_says_what_was_cut(
        tmp_path: Path, keep: float) -> None:
    path = tmp_path / "t.ulma"
    write_sample(path, calls=200_000)  # several chunks
    blob = path.read_bytes()
    cut = tmp_path / "cut.ulma"
    cut.write_bytes(blob[:int(len(blob) * keep)])
    reader = trace.TraceReader(str(cut))
    profile = load_profile(reader)
    assert any("cut short" in w or "not read" in w for w in reader.warnings), reader.warnings
    assert any("no end record" in w for w in reader.warnings)
    if profile.functions:
        assert 0 < profile.functions[0].calls < 200_000


@pytest.mark.parametrize(("blob", "message"), [
    (b"", "not an ulma trace"),
    (b"GARBAGE!" * 10, "not an ulma trace"),
    (struct.pack("<8sHHIQQ", trace.MAGIC, trace.VERSION + 1, 32, 0, 0, 0), "this ulma reads up to"),
    (struct.pack("<8sHHIQQ", trace.MAGIC, trace.VERSION, 32, 0, 0, 0), "no readable metadata"),
])
def test_files_that_are_not_readable_traces_get_one_clear_error(
        tmp_path: Path, blob: bytes, message: str) -> None:
    path = tmp_path / "bad.ulma"
    path.write_bytes(blob)
    with pytest.raises(trace.TraceError, match=message):
        trace.TraceReader(str(path))


def test_a_missing_file_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(trace.TraceError, match="cannot read"):
        trace.TraceReader(str(tmp_path / "nope.ulma"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_files_never_crash_the_reader(tmp_path: Path, data: st.DataObject) -> None:
    path = tmp_path / "t.ulma"
    if not path.exists():
        write_sample(path, calls=3000)
    blob = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.integers(0, 255))
    blob = blob[:data.draw(st.integers(0, len(blob)))]
    bad = tmp_path / "bad.ulma"
    bad.write_bytes(bytes(blob))
    try:
        reader = trace.TraceReader(str(bad))
    except trace.TraceError:
        return
    profile = load_profile(reader)  # a partial result, never an exception
    for f in profile.functions:
        assert f.self_ns >= 0 and f.total_ns >= 0
