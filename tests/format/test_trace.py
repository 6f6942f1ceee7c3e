"""Trace files: what the writer writes the reader reads back, and damage of
any kind gives a clear error or a partial result with a warning."""

from __future__ import annotations

import contextlib
import io
import json
import random
import struct
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import given

from tests.hostile_traces import (
    CHUNK,
    CRAFTED,
    HEADER,
    WORK,
    HostileTrace,
    bounded,
    file_header,
    raw_chunk,
    raw_trace,
    symbols_chunk,
    write,
)
from tests.hostile_traces import events as encoded
from ulma.cli.main import main
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
    (file_header(3), "is trace format 3; this ulma reads formats 1 up to 2"),
    (file_header(0), "is trace format 0; this ulma reads formats 1 up to 2"),
    (file_header(2), "no readable metadata"),
    (file_header(2)[:-8] + bytes(8), "damaged header"),  # its checksum
    (file_header(1), "no readable metadata"),  # format 1: no header checksum
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


def chunk_offsets(blob: bytes) -> list[tuple[int, int]]:
    """(offset, kind) of each chunk of an undamaged trace."""
    out, at = [], struct.calcsize("<8sHHIQQ")
    while at + 24 <= len(blob):
        _magic, kind, _codec, _res, _thread, stored, _raw, _crc = struct.unpack_from("<4sBBHIIII", blob, at)
        out.append((at, kind))
        at += 24 + stored
    return out


def changed(before: bytes, after: bytes) -> set[int]:
    return {i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b}


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
    # Damage is never silent: without a warning the result is the whole file's (the damage wrote
    # back the same value, or cut the file right after a chunk: then the END record is missing).
    if not reader.warnings:
        assert bytes(blob) == path.read_bytes()
        assert [(f.name, f.calls, f.total_ns) for f in profile.functions] == [("work", 3000, 3000 * 5 * 0.5)]
        assert profile.dropped == 3
    for f in profile.functions:  # a partial result: never more than was written
        assert f.calls <= 3000 and f.self_ns <= f.total_ns, f


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`ulma ARGV` in this process: (exit code, stdout, stderr).  An exception escaping main()
    is what a user would see as a traceback: it fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


# Hostile records and chunk streams through `ulma report` and every export:
# tests/exporters/test_export_fuzz.py.


@pytest.mark.parametrize("probe_ns", [1e308, 5e6, -1.0])
def test_a_probe_cost_no_agent_could_write_is_ignored(tmp_path: Path, probe_ns: float) -> None:
    """The agent keeps the probe cost in 32 bits of picoseconds: a larger one in END is damage
    (1e308 made every overhead infinite: a traceback found by the fuzzer in CI)."""
    path, out = tmp_path / "t.ulma", tmp_path / "r.json"
    events = [records.Event(10, 1, CALL, 0, 0), records.Event(20, 1, RETURN, 0, 0)]
    write(path, HostileTrace({}, False, [
        ("symbols", [trace.SymbolDef(1, records.LAYOUT["SYM_PYFUNC"], 0, "work", "/src/work.py", 7)]),
        ("events", (0, records.encode(events)))], {"probe_ns": probe_ns}))
    code, _stdout, err = run_cli(["report", str(path), "--json", str(out)])
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["probe_ns"] == 0 and [f["calls"] for f in report["functions"]] == [1], report


def test_one_record_with_a_large_id_takes_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "one.ulma"
    event = records.Event(10, (1 << 24) - 1, CALL, 0, 0)
    write(path, HostileTrace({}, False, [("events", (0, records.encode([event])))], None))
    with bounded(30, memory_bytes=256 << 20):
        profile = load_profile(trace.TraceReader(str(path)))
    assert [f.calls for f in profile.functions] == [1]


@pytest.mark.parametrize(("field", "at"), [("kind", 4), ("thread", 8)])
def test_a_damaged_chunk_kind_or_thread_is_not_silent(tmp_path: Path, field: str, at: int) -> None:
    path, bad = tmp_path / "t.ulma", tmp_path / "bad.ulma"
    write_sample(path, calls=3000)
    blob = bytearray(path.read_bytes())
    events = next(offset for offset, kind in chunk_offsets(bytes(blob)) if kind == trace.EVENTS)
    blob[events + at] ^= 0x02  # events (3) -> meta (1); thread 0 -> 2
    bad.write_bytes(bytes(blob))
    reader = trace.TraceReader(str(bad))
    profile = load_profile(reader)
    assert any("fails its checksum" in w for w in reader.warnings), (field, reader.warnings)
    assert profile.functions == [], "nothing after the damage is read"


# --- what a reader spends on a file is bounded by the file (issue 10) ---

def read_all(path: Path) -> tuple[trace.TraceReader, list[trace.Chunk]]:
    reader = trace.TraceReader(str(path))
    return reader, list(reader.chunks())


def events_read(chunks: list[trace.Chunk]) -> int:
    return sum(len(c.payload) for c in chunks if c.kind == trace.EVENTS) // records.EVENT_BYTES


def test_the_writer_puts_at_most_events_per_chunk_records_in_a_chunk(tmp_path: Path) -> None:
    """A drain larger than a chunk (a big ring) is split: the reader refuses longer chunks."""
    path = tmp_path / "t.ulma"
    n = trace.EVENTS_PER_CHUNK * 7 // 2
    data = records.encode([records.Event(i, 1, CALL if i % 2 == 0 else RETURN, 0, 0) for i in range(n)])
    w = trace.TraceWriter(str(path), {})
    w.events(0, data[:16])
    w.events(0, data[16:])
    w.close({})
    counts = [raw // records.EVENT_BYTES for _at, kind, raw in chunk_lengths(path.read_bytes())
              if kind == trace.EVENTS]
    assert max(counts) == trace.EVENTS_PER_CHUNK and sum(counts) == n, counts
    reader, chunks = read_all(path)
    assert b"".join(c.payload for c in chunks if c.kind == trace.EVENTS) == data and not reader.warnings


def test_the_writer_splits_a_large_symbol_table_into_chunks_the_reader_takes(tmp_path: Path) -> None:
    path = tmp_path / "t.ulma"
    defs = [trace.SymbolDef(i, records.LAYOUT["SYM_PYFUNC"], 0, f"f{i}_" + "x" * 2000, "/a.py", i)
            for i in range(3000)]  # 6 MB, as long_symbol_names.py makes
    w = trace.TraceWriter(str(path), {})
    w.symbols(defs)
    w.close({})
    sizes = [raw for _at, kind, raw in chunk_lengths(path.read_bytes()) if kind == trace.SYMBOLS]
    assert len(sizes) > 1 and max(sizes) <= 2 << 20, sizes
    reader = trace.TraceReader(str(path))
    assert reader.symbols() == {d.id: d for d in defs} and not reader.warnings


def chunk_lengths(blob: bytes) -> list[tuple[int, int, int]]:
    """(offset, kind, raw length) of each chunk of an undamaged trace."""
    out, at = [], HEADER.size
    while at + CHUNK.size <= len(blob):
        _magic, kind, _codec, _res, _thread, stored, raw, _crc = CHUNK.unpack_from(blob, at)
        out.append((at, kind, raw))
        at += CHUNK.size + stored
    return out


def test_an_events_chunk_longer_than_events_per_chunk_records_is_refused(tmp_path: Path) -> None:
    """64 MiB chunks of a few KB each took `ulma report` to 3.5 GiB."""
    path = tmp_path / "t.ulma"
    CRAFTED["chunks_of_64_mib"].write(path)
    with bounded(30, memory_bytes=512 << 20):
        reader, chunks = read_all(path)
    assert events_read(chunks) == 0
    assert any("impossible chunk length (67108864 bytes" in w for w in reader.warnings), reader.warnings


def test_a_zstd_frame_claiming_gigabytes_is_refused_without_allocating_them(tmp_path: Path) -> None:
    path = tmp_path / "t.ulma"
    CRAFTED["zstd_frame_claiming_4_gib"].write(path)
    with bounded(30, memory_bytes=256 << 20):  # the claim: 4 GiB (a MemoryError on the old reader)
        reader, chunks = read_all(path)
    assert events_read(chunks) == 0
    assert any("claims 4294967296 bytes" in w for w in reader.warnings), reader.warnings


def test_a_zstd_frame_yielding_more_than_its_chunk_declares_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.ulma"
    CRAFTED["zstd_frame_yielding_more_than_declared"].write(path)
    with bounded(30, memory_bytes=256 << 20):
        reader, chunks = read_all(path)
    assert events_read(chunks) == 0 and any("does not decompress" in w for w in reader.warnings)


def test_a_file_yields_at_most_its_decompression_budget(tmp_path: Path) -> None:
    """256 full chunks (256 MiB of records) from 38 KB: reading stops at the budget, and says so."""
    path = tmp_path / "t.ulma"
    CRAFTED["full_chunks_past_the_budget"].write(path)
    reader, chunks = read_all(path)
    assert any("expands to more than 64 times its size" in w for w in reader.warnings), reader.warnings
    size = path.stat().st_size
    assert 0 < sum(len(c.payload) for c in chunks) <= trace.budget(size) == trace.BUDGET_FLOOR, size


def test_a_real_trace_is_far_inside_its_budget(tmp_path: Path) -> None:
    """The budget is 64 times the file's size; the writer's chunks of real-looking records (ticks
    with jitter, a few ids) expand far less."""
    path = tmp_path / "t.ulma"
    rng = random.Random(1)
    ticks, evs = 0, []
    for i in range(200_000):
        ticks += rng.randrange(20, 400)
        evs.append(records.Event(ticks, rng.randrange(1, 50), CALL if i % 2 == 0 else RETURN, 0, 0))
    w = trace.TraceWriter(str(path), {})
    w.events(0, records.encode(evs))
    w.close({})
    assert len(evs) * records.EVENT_BYTES < 16 * path.stat().st_size


def test_a_format_1_file_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "old.ulma"
    CRAFTED["format_1_chunks_of_64_mib"].write(path)  # format 1 took chunks of up to 64 MiB
    reader, chunks = read_all(path)
    assert reader.version == 1 and events_read(chunks) == 0  # 64 MiB: past the budget's floor
    assert any("expands to more than" in w for w in reader.warnings), reader.warnings
    small = tmp_path / "small.ulma"
    raw_trace(small, [symbols_chunk(WORK, version=1),
                      raw_chunk(trace.EVENTS, encoded((10, 1, CALL), (20, 1, RETURN)), version=1)], version=1)
    profile = load_profile(trace.TraceReader(str(small)))
    assert [(f.name, f.calls, f.total_ns) for f in profile.functions] == [("work", 1, 10)]
