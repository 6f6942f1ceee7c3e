"""Well-formed trace files with hostile contents, for fuzzing what reads them.

Flipping bytes of a finished file mostly tests the chunk checksum and zstd:
nearly every case dies there.  These files are written by the real writer
(format/trace.py), so every chunk is intact and decompresses, while what is
inside is hostile: records of any kind, flags, ids and ticks (backwards, huge,
unmatched returns, SYNC groups that lie about their size, CPU readings out of
nowhere), symbols with separators, line breaks and odd ids in their names,
and META/CALIB/END records whose fields have the wrong type or absurd values.
The test programs that run a reader on them must get a result or one clear
error line, never a traceback, a hang or unbounded memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import hypothesis.strategies as st
import zstandard

from ulma.format import records, schema, trace

U32, U64 = (1 << 32) - 1, (1 << 64) - 1
KINDS = sorted(records.KIND_NAMES)
FLAGS = (0, records.SYNC_BEGIN, records.SYNC_FRAME, records.SYNC_BEGIN | records.SYNC_AFTER_DROP,
         records.EVF_UNMEASURED, records.EVF_DISPATCH, records.CPU_RUN_DELAY,
         records.CPU_RUN_DELAY | records.CPU_NO_BLOCK)
SMALL_IDS = st.integers(0, 12)
MAX_FUNC_ID = 1 << 24  # ids at or above are corruption: the replay counts them as unmatched
# Record ids: the symbols' own, a few thousand, any below the limit (the replay's per-thread
# totals are sparse: a large id costs no more than a small one), and those past the limit.
ids = st.one_of(SMALL_IDS, st.integers(0, 4096), st.integers(0, MAX_FUNC_ID - 1),
                st.sampled_from([MAX_FUNC_ID - 1, MAX_FUNC_ID, U32]), st.integers(MAX_FUNC_ID, U32))

texts = st.one_of(
    st.sampled_from(["", "<module>", "a;b", "x\ny", "tab\there", "cr\rlf", " ", "\x00", "λ (ü:1)",
                     "<unknown #3>", "f (/a.py:1);g (/b.py:2) 9", "\\", '"', "%s%n", "1e308"]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=24),
)
# any JSON value, including the wrong types for every field and NaN/Infinity
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.floats(), texts),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=6)
numbers = st.one_of(
    st.sampled_from([0.5, 1.0, 0.37, 3.0, 1000]),
    st.sampled_from([0, -1, 1e-300, 1e300, -1e308, 1e308, float("inf"), float("-inf"), float("nan"),
                     1 << 64, -(1 << 63), 10**30, True, "1", None]),
    json_values)
keys = st.one_of(st.sampled_from(["0", "1", "2", "-1", "²", "٣", " 1", "1.5", "99999999999999999999"]),
                 texts)
maps = st.one_of(json_values, st.dictionaries(keys, numbers, max_size=4))


@st.composite
def symbols(draw: st.DrawFn) -> trace.SymbolDef:
    return trace.SymbolDef(
        id=draw(ids),
        kind=draw(st.one_of(st.sampled_from([1, 2, 3, 4]), st.integers(0, 0xFFFF))),
        flags=draw(st.one_of(st.sampled_from([0, 1, 2, 3]), st.integers(0, 0xFFFF))),
        name=draw(texts), file=draw(texts), line=draw(st.one_of(st.integers(0, 500), st.integers(0, U32))))


@st.composite
def event_records(draw: st.DrawFn) -> bytes:
    """One thread's records: ticks mostly going forward, sometimes anywhere; any kind, id,
    flags and aux, with the meaningful values drawn often; sometimes a torn record at the end."""
    out = []
    ticks = draw(st.one_of(st.integers(0, 1000), st.integers(0, U64)))
    for _ in range(draw(st.integers(0, 60))):
        if draw(st.integers(0, 9)) == 0:
            ticks = draw(st.sampled_from([0, 1, U64, 1 << 63, (1 << 48) - 1])) if draw(st.booleans()) \
                else draw(st.integers(0, U64))
        else:
            ticks = (ticks + draw(st.integers(0, 1000))) & U64
        out.append(records.Event(
            ticks=ticks,
            id=draw(ids),
            kind=draw(st.one_of(st.sampled_from(KINDS), st.integers(0, 255))),
            flags=draw(st.one_of(st.sampled_from(FLAGS), st.integers(0, 255))),
            aux=draw(st.one_of(st.integers(0, 6), st.integers(0, 0xFFFF)))))
    return records.encode(out) + draw(st.sampled_from([b"", b"\x01", b"\xff" * 15]))


@dataclass(frozen=True)
class HostileTrace:
    """What to write: chunks in order, then an END record (None: the run was cut short)."""

    meta: dict[str, Any]
    compress: bool
    chunks: list[tuple[str, Any]]  # ("symbols", [SymbolDef]) | ("events", (thread, bytes)) | ("calib", {})
    end: dict[str, Any] | None

    @property
    def record_count(self) -> int:
        """Whole event records in the file."""
        return sum(len(value[1]) // records.EVENT_BYTES for kind, value in self.chunks if kind == "events")


@st.composite
def hostile_traces(draw: st.DrawFn) -> HostileTrace:
    meta = draw(st.fixed_dictionaries(
        {}, optional={"python": json_values, "ns_per_tick": numbers, "start_ticks": numbers,
                      "engine": json_values, "clock": json_values, "pid": json_values}))
    threads = st.one_of(st.integers(0, 3), st.integers(0, U32))
    chunk = st.one_of(
        st.tuples(st.just("symbols"), st.lists(symbols(), max_size=6)),
        st.tuples(st.just("events"), st.tuples(threads, event_records())),
        st.tuples(st.just("calib"), st.dictionaries(st.sampled_from(["ns_per_tick", "at"]), numbers)))
    chunks = draw(st.lists(chunk, max_size=6))
    end = draw(st.one_of(st.none(), st.fixed_dictionaries(
        {}, optional={"wall_ns": numbers, "ns_per_tick": numbers, "probe_ns": numbers,
                      "dropped": maps, "os_tid": maps, "program_pid": numbers, "returncode": numbers,
                      "schedstat": json_values, "native_calls": json_values, "cpu_samples": json_values})))
    return HostileTrace(meta, draw(st.booleans()), chunks, end)


def write(path: Path, t: HostileTrace | RawTrace) -> None:
    """Writes `t`: a HostileTrace through the real writer (so every chunk is intact and
    decompresses), a RawTrace as it is."""
    if isinstance(t, RawTrace):
        path.write_bytes(t.blob)
        return
    w = trace.TraceWriter(str(path), t.meta, compress=t.compress)
    for kind, value in t.chunks:
        if kind == "symbols":
            w.symbols(value)
        elif kind == "events":
            thread, data = value
            w.chunk(trace.EVENTS, data, thread)
        else:
            w.chunk(trace.CALIB, json.dumps(value).encode())
    if t.end is None:
        w.abandon()
    else:
        w.close(t.end)


class Hang(Exception):
    pass


@contextlib.contextmanager
def bounded(seconds: float, memory_bytes: int = 2 << 30) -> Iterator[None]:
    """Fails (Hang, MemoryError) instead of hanging or taking the machine's memory: at most
    `seconds` of wall time and `memory_bytes` more address space than now."""
    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"still running after {seconds} s")

    vm = next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
              if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# ---------------------------------------------------------------------------------------------------
# Crafted traces: one per defect found by hand (issue 10), each a few KB on disk.  `write_crafted`
# makes the file; CRAFTED says what a user must see from `ulma report` and `ulma export`.

EVENT = struct.Struct("<QIBBH")  # u64 ticks | u32 id | u8 kind | u8 flags | u16 aux
PYFUNC = records.LAYOUT["SYM_PYFUNC"]
WORK = trace.SymbolDef(1, PYFUNC, 0, "work", "/src/work.py", 7)


# The format written out here, from the module's description, not with its code: these files
# test the reader against the layout, not against the writer.
HEADER = struct.Struct("<8sHHIQQ")  # magic, version, header bytes, flags, created, crc32 (format 2)
CHUNK = struct.Struct("<4sBBHIIII")  # magic, kind, codec, reserved, thread, stored, raw, crc32


def file_header(version: int | None = None) -> bytes:
    version = trace.VERSION if version is None else version
    head = HEADER.pack(trace.MAGIC, version, HEADER.size, 0, 0, 0)
    return head if version < 2 else head[:24] + struct.pack("<Q", zlib.crc32(head[:24]))


def raw_chunk(kind: int, payload: bytes, thread: int = 0, *, codec: int = trace.RAW,
              stored: bytes | None = None, raw_length: int | None = None, version: int | None = None,
              crc: int | None = None) -> bytes:
    """One chunk as the writer would make it, or with any field set to a lie.  Format 2's
    crc32 covers the header's first 20 bytes, then the stored bytes; format 1's those only."""
    version = trace.VERSION if version is None else version
    if stored is None:
        stored = zstandard.ZstdCompressor().compress(payload) if codec == trace.ZSTD else payload
    head = CHUNK.pack(trace.CHUNK_MAGIC, kind, codec, 0, thread, len(stored),
                      len(payload) if raw_length is None else raw_length, 0)[:20]
    if crc is None:
        crc = zlib.crc32(stored, zlib.crc32(head) if version >= 2 else 0)
    return head + struct.pack("<I", crc) + stored


def raw_trace(path: Path, chunks: list[bytes], *, version: int | None = None, meta: bytes | None = None,
              end: bytes | None = b'{"wall_ns": 1000, "ns_per_tick": 1.0}') -> None:
    """A trace of the given chunks between a META and (unless None) an END chunk."""
    version = trace.VERSION if version is None else version
    meta = json.dumps({"ns_per_tick": 1.0, "start_ticks": 0}).encode() if meta is None else meta
    parts = [file_header(version), raw_chunk(trace.META, meta, version=version), *chunks]
    if end is not None:
        parts.append(raw_chunk(trace.END, end, version=version))
    path.write_bytes(b"".join(parts))


def events(*rows: tuple[int, int, int], times: int = 1) -> bytes:
    """Records (ticks, id, kind), the whole list `times` over."""
    return b"".join(EVENT.pack(t, i, k, 0, 0) for t, i, k in rows) * times


def symbols_chunk(*defs: trace.SymbolDef, version: int | None = None) -> bytes:
    packed = b"".join(struct.pack("<IHHIII", d.id, d.kind, d.flags, d.line, len(d.name.encode()),
                                  len(d.file.encode())) + d.name.encode() + d.file.encode() for d in defs)
    return raw_chunk(trace.SYMBOLS, packed, version=version)


def zstd_frame(content_size: int, payload: bytes = b"") -> bytes:
    """A zstd frame whose header claims `content_size` bytes, holding `payload` in one raw block."""
    descriptor = 0xC0 | 0x20  # an 8-byte content size, single segment (the window is the content size)
    block = struct.pack("<I", 1 | len(payload) << 3)[:3]  # last block, raw
    return b"\x28\xb5\x2f\xfd" + bytes([descriptor]) + struct.pack("<Q", content_size) + block + payload


def _many_threads_huge_id(path: Path) -> None:
    big = (1 << 24) - 2
    raw_trace(path, [symbols_chunk(WORK)] + [raw_chunk(trace.EVENTS, events((10, big, records.CALL)), t)
                                             for t in range(12)])


def _chunks_of_64_mib(path: Path, version: int | None) -> None:
    # 4 Mi identical CALLs per chunk: 64 MiB of records from ~2 KB of zstd, eight times
    calls = events((10, 1, records.CALL), times=1 << 22)
    chunk = raw_chunk(trace.EVENTS, calls, codec=trace.ZSTD, version=version)
    raw_trace(path, [symbols_chunk(WORK, version=version)] + [chunk] * 8, version=version)


def _full_chunks_past_the_budget(path: Path) -> None:
    # chunks of the largest size allowed (1 MiB), each ~100 bytes of zstd: 256 MiB from ~30 KB
    data = events((10, 1, records.CALL), (20, 1, records.RETURN), times=trace.EVENTS_PER_CHUNK // 2)
    raw_trace(path, [symbols_chunk(WORK)] + [raw_chunk(trace.EVENTS, data, codec=trace.ZSTD)] * 256)


def _unmatched_returns(path: Path) -> None:
    n = 300_000
    calls = b"".join(EVENT.pack(10 + i, 1, records.CALL, 0, 0) for i in range(n))
    returns = b"".join(EVENT.pack(10 + n + i, 2, records.RETURN, 0, 0) for i in range(n))
    data = calls + returns
    step = trace.EVENTS_PER_CHUNK * records.EVENT_BYTES
    raw_trace(path, [symbols_chunk(WORK, trace.SymbolDef(2, PYFUNC, 0, "other", "/src/o.py", 1))]
              + [raw_chunk(trace.EVENTS, data[at:at + step], codec=trace.ZSTD)
                 for at in range(0, len(data), step)])


CALL_RETURN = events((10, 1, records.CALL), (20, 1, records.RETURN))


def _work_chunks() -> list[bytes]:
    return [symbols_chunk(WORK), raw_chunk(trace.EVENTS, CALL_RETURN)]


def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


CraftFn = Callable[[Path], None]


@dataclass(frozen=True)
class Crafted:
    """A crafted trace and what a user must see from reading it: exit 0 with a warning line
    holding `warns` (None: no warning is due -- the file is intact and its contents merely
    hostile), or (`fails`) one error line holding it."""

    write: CraftFn
    warns: str | None = None
    fails: str | None = None


CRAFTED: dict[str, Crafted] = {
    "huge_id_on_12_threads": Crafted(_many_threads_huge_id),
    "chunks_of_64_mib": Crafted(lambda p: _chunks_of_64_mib(p, None), warns="impossible chunk length"),
    "format_1_chunks_of_64_mib": Crafted(lambda p: _chunks_of_64_mib(p, 1), warns="expands to more than"),
    "full_chunks_past_the_budget": Crafted(_full_chunks_past_the_budget, warns="expands to more than"),
    "300k_calls_then_300k_unmatched_returns": Crafted(_unmatched_returns),
    "nan_and_infinity_in_end": Crafted(lambda p: raw_trace(
        p, _work_chunks(), end=b'{"wall_ns": NaN, "ns_per_tick": Infinity, "probe_ns": -Infinity, '
                               b'"dropped": {"0": NaN}}'), warns="ns_per_tick, probe_ns, wall_ns, dropped"),
    "overflowing_float_in_calib": Crafted(lambda p: raw_trace(
        p, [*_work_chunks(), raw_chunk(trace.CALIB, b'{"ns_per_tick": 1e400}')], end=None),
        warns="the calib record has ns_per_tick"),
    "200k_levels_of_json_in_end": Crafted(lambda p: raw_trace(p, _work_chunks(), end=_deep(200_000)),
                                          warns="nested deeper than"),
    "200k_levels_of_json_in_meta": Crafted(lambda p: raw_trace(p, _work_chunks(), meta=_deep(200_000)),
                                           fails="damaged metadata (nested deeper than"),
    "200k_levels_of_json_in_calib": Crafted(lambda p: raw_trace(
        p, [*_work_chunks(), raw_chunk(trace.CALIB, b'{"x": ' + _deep(200_000) + b"}")]),
        warns="nested deeper than"),
    "a_5000_digit_integer_in_end": Crafted(lambda p: raw_trace(
        p, _work_chunks(), end=b'{"wall_ns": 1' + b"0" * 5000 + b"}"),
                                           warns="the end record at byte"),
    "wrong_types_in_end": Crafted(lambda p: raw_trace(p, _work_chunks(), end=json.dumps(
        {"wall_ns": 1.5, "program_pid": True, "os_tid": {"x": 1}, "tool_id": 99, "ns_per_tick": "1"}
    ).encode()),
        warns="wall_ns"),
    "zstd_frame_claiming_4_gib": Crafted(lambda p: raw_trace(p, [symbols_chunk(WORK), raw_chunk(
        trace.EVENTS, b"", codec=trace.ZSTD, stored=zstd_frame(4 << 30), raw_length=16)]), warns="claims"),
    "zstd_frame_yielding_more_than_declared": Crafted(lambda p: raw_trace(p, [symbols_chunk(WORK), raw_chunk(
        trace.EVENTS, b"", codec=trace.ZSTD, raw_length=16,
        stored=zstandard.ZstdCompressor(write_content_size=False).compress(bytes(1 << 20)))]),
        warns="does not decompress"),
    "chunk_length_out_of_range": Crafted(lambda p: raw_trace(p, [*_work_chunks(), raw_chunk(
        trace.EVENTS, b"")[:12] + b"\xff" * 12]),  # stored and raw lengths 2^32 - 1
        warns="impossible chunk length"),
    "raw_chunk_whose_lengths_disagree": Crafted(lambda p: raw_trace(p, [*_work_chunks(), raw_chunk(
        trace.EVENTS, events((30, 1, records.CALL)), raw_length=1 << 20)]), warns="wrong length"),
    "truncated_chunk": Crafted(lambda p: raw_trace(p, [*_work_chunks(), raw_chunk(
        trace.EVENTS, events((30, 1, records.CALL), times=100))[:-7]], end=None), warns="cut short"),
    "bad_crc": Crafted(lambda p: raw_trace(p, [*_work_chunks(), raw_chunk(
        trace.EVENTS, events((30, 1, records.CALL)), crc=0x12345678)]), warns="fails its checksum"),
    "damaged_chunk_kind": Crafted(lambda p: raw_trace(p, [
        symbols_chunk(WORK), _flip(raw_chunk(trace.EVENTS, CALL_RETURN), 4)]),
        warns="fails its checksum"),
    "symbols_with_absurd_lengths": Crafted(lambda p: raw_trace(p, [raw_chunk(
        trace.SYMBOLS, struct.pack("<IHHIII", 1, PYFUNC, 0, 1, 0xFFFFFFFF, 0xFFFFFFFF) + b"abc"),
        raw_chunk(trace.EVENTS, events((10, 1, records.CALL), (20, 1, records.RETURN)))]),
        warns="symbols chunk"),
    "symbols_with_non_utf8_names": Crafted(lambda p: raw_trace(p, [raw_chunk(
        trace.SYMBOLS, struct.pack("<IHHIII", 1, PYFUNC, 0, 1, 4, 3) + b"\xff\xfe\xc3(" + b"\xed\xa0\x80"),
        raw_chunk(trace.EVENTS, events((10, 1, records.CALL), (20, 1, records.RETURN)))])),
}


def _flip(chunk: bytes, at: int) -> bytes:
    """`chunk` with bit 1 of byte `at` flipped (the kind at 4: events (3) -> meta (1))."""
    return chunk[:at] + bytes([chunk[at] ^ 0x02]) + chunk[at + 1:]


LIMIT_SECONDS = 30.0  # what no input may take (issue 10) ...
LIMIT_MEMORY = 1 << 30  # ... and the address space it runs in
# .ci/sanitize: the C core built with AddressSanitizer, which cannot reserve its shadow memory
# under an address-space limit (and whose shadow memory is resident): there the commands run
# without the limit, for what the sanitizers check; the bound itself is checked in .ci/run
SANITIZED = os.environ.get("ULMA_SANITIZED") == "1"


@dataclass(frozen=True)
class Outcome:
    """How a command ended: its exit code (None: killed at the time limit), its stderr,
    its wall time and its peak resident memory."""

    code: int | None
    stderr: str
    seconds: float
    peak_rss: int


def run_limited(argv: list[str], *, env: dict[str, str] | None = None, seconds: float = LIMIT_SECONDS,
                memory: int = LIMIT_MEMORY) -> Outcome:
    """Runs `argv` with RLIMIT_AS = `memory`, killing its session after `seconds`."""
    def limit() -> None:
        if not SANITIZED:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    with tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                env=env, preexec_fn=limit, start_new_session=True)
        killed = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > seconds:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                killed = True
                break
            time.sleep(0.01)
        elapsed = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    return Outcome(None if killed else proc.returncode, text, elapsed, usage.ru_maxrss * 1024)


# ---------------------------------------------------------------------------------------------------
# Chunk streams: files put together chunk by chunk (not through the writer), so that the chunk
# headers, the zstd frames and the JSON records may lie as well as the records.

@dataclass(frozen=True)
class RawTrace:
    """A whole file's bytes, and how many whole records its events chunks really hold."""

    blob: bytes
    record_count: int


def schema_keys() -> list[str]:
    return sorted({key for fields in schema.FIELDS.values() for key in fields})


json_texts = st.one_of(
    st.builds(lambda v: json.dumps(v).encode(), json_values),  # json.dumps writes NaN and Infinity
    st.builds(lambda keys, value: json.dumps(dict.fromkeys(keys, value)).encode(),
              st.lists(st.sampled_from([*schema_keys(), "x"]), max_size=4), numbers),
    st.builds(lambda n: b"[" * n + b"]" * n, st.sampled_from([8, 9, 1000, 200_000])),
    st.sampled_from([b"", b"{", b'{"wall_ns": NaN}', b'{"a": 1e400}', b'{"wall_ns": 1' + b"0" * 5000 + b"}",
                     b"\xff\xfe{}", b'{"python": "\xed\xa0\x80"}', b"null", b"[]"]),
    st.binary(max_size=40),
)


@st.composite
def chunk_streams(draw: st.DrawFn) -> RawTrace:
    """A META chunk then up to six chunks of any kind; each field of a chunk may lie: kind, codec,
    thread, lengths, crc, a zstd frame's claimed size, or the chunk is cut."""
    parts, count = [file_header()], 0
    meta = draw(st.one_of(st.just(b'{"ns_per_tick": 1.0}'), json_texts))
    parts.append(raw_chunk(trace.META, meta))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.one_of(st.sampled_from([trace.SYMBOLS, trace.EVENTS, trace.EVENTS, trace.END,
                                               trace.CALIB, trace.META]), st.integers(0, 255)))
        if kind == trace.EVENTS:
            payload = draw(event_records())
        elif kind == trace.SYMBOLS:
            payload = b"".join(trace.pack_symbols(draw(st.lists(symbols(), max_size=4)))) \
                + draw(st.sampled_from([b"", struct.pack("<IHHIII", 1, 1, 0, 1, U32, 4), b"\xff" * 7]))
        elif kind in (trace.META, trace.END, trace.CALIB):
            payload = draw(json_texts)
        else:
            payload = draw(st.binary(max_size=64))
        codec = draw(st.sampled_from([trace.RAW, trace.ZSTD, trace.ZSTD, 2, 255]))
        thread = draw(st.one_of(st.integers(0, 3), st.integers(0, U32)))
        lie = draw(st.sampled_from(["none"] * 8 + ["raw_length", "crc", "claim", "cut", "stored", "frame"]))
        stored = None
        raw_length = None
        if lie == "raw_length":
            raw_length = draw(st.one_of(st.integers(0, 2 * len(payload) + 16), st.sampled_from([
                trace.MAX_RAW[trace.EVENTS], trace.MAX_RAW[trace.EVENTS] + 16, trace.MAX_CHUNK_BYTES, U32])))
        elif lie == "claim" and codec == trace.ZSTD:
            stored = zstd_frame(draw(st.sampled_from([len(payload) + 1, 1 << 20, 4 << 30, U64])), payload)
        elif lie == "frame" and codec == trace.ZSTD:  # no size in the header: more than declared comes out
            stored = zstandard.ZstdCompressor(write_content_size=False).compress(payload * 3 + b"x")
        chunk = raw_chunk(kind, payload, thread, codec=codec, stored=stored, raw_length=raw_length,
                          crc=draw(st.integers(0, U32)) if lie == "crc" else None)
        if lie == "stored":
            stored_length = draw(st.sampled_from([0, U32, len(chunk) + 100]))
            chunk = chunk[:12] + struct.pack("<I", stored_length) + chunk[16:]
        if lie == "cut":
            chunk = chunk[:draw(st.integers(0, len(chunk) - 1))]
        if kind == trace.EVENTS:
            count += len(payload) // records.EVENT_BYTES
        parts.append(chunk)
    return RawTrace(b"".join(parts), count)
