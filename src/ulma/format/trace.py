"""The trace file (``run.ulma``): the event stream and the symbol table, in
self-describing chunks appended while the program runs.

Layout (little-endian)::

    file header  32 B   magic "ULMATRCE" | u16 version | u16 header bytes | u32 flags
                        | u64 created (CLOCK_REALTIME ns) | u64 reserved
    chunk        24 B   magic "CHNK" | u8 kind | u8 codec | u16 reserved | u32 thread
                        | u32 stored length | u32 raw length | u32 crc32 of stored bytes
                 then the stored bytes (raw, or zstd-compressed when codec = 1)

Chunk kinds: META (JSON: clock start readings, pid, host, Python, engine),
SYMBOLS (packed definitions, see ``_SYMBOL``), EVENTS (16-byte records of one
thread), CALIB (JSON: the clock calibration so far, so a file cut short still
converts ticks well, and once the agent started what it measured there,
``AGENT_KEYS``: the first CALIB comes before the program's first events, the
next about once a second), END (JSON: run time, drops, final calibration, the
agent's figures).  A file cut short --
the monitor or the machine killed -- reads up to its last complete chunk and
the reader says how much was lost.  Nothing in a trace is ever executed.
"""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Final

import zstandard

from ulma.format import files, records

MAGIC: Final = b"ULMATRCE"
VERSION: Final = 1
CHUNK_MAGIC: Final = b"CHNK"

META, SYMBOLS, EVENTS, END, CALIB = 1, 2, 3, 4, 5
KIND_NAMES: Final = {META: "meta", SYMBOLS: "symbols", EVENTS: "events", END: "end", CALIB: "calib"}
RAW, ZSTD = 0, 1

_HEADER = struct.Struct("<8sHHIQQ")
_CHUNK = struct.Struct("<4sBBHIIII")
_SYMBOL = struct.Struct("<IHHIII")  # id, kind, flags, line, name bytes, file bytes
MAX_CHUNK_BYTES: Final = 64 << 20  # larger lengths are corruption, not data
EVENTS_PER_CHUNK: Final = 1 << 16  # 1 MiB of records before a chunk is written
# A calibration outside this is damage, not a clock (a tick of 1 fs to 1 ms); times computed
# from it would overflow.
NS_PER_TICK_RANGE: Final = (1e-6, 1e6)


# The agent's figures (Session.agent_info) kept in CALIB and END records.
AGENT_KEYS: Final = ("probe_ns", "cpu_samples", "schedstat", "native_calls", "program_start_ticks")


class TraceError(Exception):
    """The file is not a trace this version can read; the message says why."""


SymbolDef = records.Symbol  # the trace stores the symbol table's own definitions


def pack_symbols(symbols: list[SymbolDef]) -> bytes:
    out = []
    for s in symbols:
        name, file = s.name.encode(), s.file.encode()
        out.append(_SYMBOL.pack(s.id, s.kind, s.flags, s.line, len(name), len(file)) + name + file)
    return b"".join(out)


def unpack_symbols(data: bytes) -> list[SymbolDef]:
    out, at = [], 0
    while at < len(data):
        if at + _SYMBOL.size > len(data):
            raise TraceError("symbol chunk ends inside a definition")
        sid, kind, flags, line, nlen, flen = _SYMBOL.unpack_from(data, at)
        at += _SYMBOL.size
        if at + nlen + flen > len(data):
            raise TraceError("symbol chunk ends inside a name")
        name = data[at:at + nlen].decode("utf-8", "replace")
        file = data[at + nlen:at + nlen + flen].decode("utf-8", "replace")
        at += nlen + flen
        out.append(SymbolDef(sid, kind, flags, name, file, line))
    return out


class TraceWriter:
    """Appends chunks as the monitor drains; every chunk is written whole
    with one system call, so a kill leaves at most one torn chunk at the end."""

    def __init__(self, path: str, meta: dict[str, Any], *, compress: bool = True) -> None:
        self.path = path
        # in place of path from the start (0600, no link followed): a run cut short leaves it readable
        self._out = files.NewFile(path, at_once=True)
        self._fd = self._out.fd
        self._zstd = zstandard.ZstdCompressor(level=1) if compress else None
        self._pending: dict[int, list[bytes]] = {}
        self._pending_events: dict[int, int] = {}
        self.bytes_raw = 0
        self.bytes_written = 0
        self._write(_HEADER.pack(MAGIC, VERSION, _HEADER.size, 0, time.time_ns(), 0))
        self.chunk(META, json.dumps(meta).encode())

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.bytes_written += len(data)

    def chunk(self, kind: int, payload: bytes, thread: int = 0) -> None:
        stored, codec = payload, RAW
        if self._zstd is not None and len(payload) > 256:
            packed = self._zstd.compress(payload)
            if len(packed) < len(payload):
                stored, codec = packed, ZSTD
        self.bytes_raw += len(payload)
        head = _CHUNK.pack(CHUNK_MAGIC, kind, codec, 0, thread, len(stored), len(payload),
                           zlib.crc32(stored))
        self._write(head + stored)

    def symbols(self, symbols: list[SymbolDef]) -> None:
        if symbols:
            self.chunk(SYMBOLS, pack_symbols(symbols))

    def events(self, thread: int, data: bytes) -> None:
        """Buffers a thread's records; a chunk goes out every ~1 MiB."""
        self._pending.setdefault(thread, []).append(data)
        count = self._pending_events.get(thread, 0) + len(data) // records.EVENT_BYTES
        self._pending_events[thread] = count
        if count >= EVENTS_PER_CHUNK:
            self._flush(thread)

    def _flush(self, thread: int) -> None:
        parts = self._pending.pop(thread, [])
        self._pending_events.pop(thread, None)
        if parts:
            self.chunk(EVENTS, b"".join(parts), thread)

    def flush(self) -> None:
        for thread in list(self._pending):
            self._flush(thread)

    def close(self, end: dict[str, Any]) -> None:
        self.flush()
        self.chunk(END, json.dumps(end).encode())
        self.abandon()

    def abandon(self) -> None:
        """Stops writing; what is on disk stays readable up to its last whole chunk."""
        if self._fd >= 0:
            self._out.close()
            self._fd = -1


@dataclass(slots=True)
class Chunk:
    kind: int
    thread: int
    payload: bytes
    offset: int


@dataclass(slots=True)
class TraceReader:
    """Reads a trace, checking every chunk.  Damage after the last good chunk
    is not an error: ``warnings`` says what was cut."""

    path: str
    meta: dict[str, Any] = field(default_factory=dict)
    end: dict[str, Any] | None = None
    calib: dict[str, Any] | None = None  # the last CALIB record read
    warnings: list[str] = field(default_factory=list)
    size: int = 0
    _first: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        try:
            self.size = os.path.getsize(self.path)
            with open(self.path, "rb") as f:
                head = f.read(_HEADER.size)
        except OSError as exc:
            raise TraceError(f"cannot read {self.path}: {exc.strerror}") from None
        if len(head) < _HEADER.size:
            raise TraceError(f"{self.path} is not an ulma trace (too short: {self.size} bytes)")
        magic, version, header_bytes, _flags, _created, _ = _HEADER.unpack(head)
        if magic != MAGIC:
            raise TraceError(f"{self.path} is not an ulma trace (bad magic)")
        if version > VERSION:
            raise TraceError(f"{self.path} is trace format {version}; this ulma reads up to {VERSION}")
        if header_bytes < _HEADER.size:
            raise TraceError(f"{self.path} has a damaged header")
        self._first = header_bytes
        first = next(self.chunks(), None)
        if first is None or first.kind != META:
            raise TraceError(f"{self.path} has no readable metadata chunk")
        try:
            self.meta = json.loads(first.payload)
        except ValueError:
            raise TraceError(f"{self.path} has damaged metadata") from None
        if not isinstance(self.meta, dict):
            raise TraceError(f"{self.path} has damaged metadata")
        self.warnings.clear()  # chunks() is read again in full by the caller

    def chunks(self) -> Iterator[Chunk]:
        """Every intact chunk in order; stops at the first damaged one."""
        self.warnings.clear()
        with open(self.path, "rb") as f:
            offset = self._first
            f.seek(offset)
            while True:
                chunk, problem = _read_chunk(f, offset)
                if chunk is None:
                    if problem:
                        lost = self.size - offset
                        self.warnings.append(f"{problem} at byte {offset}: the last {lost} bytes "
                                             "of the trace were not read")
                    return
                if chunk.kind == END:
                    self.end = _json_or_none(chunk.payload)
                elif chunk.kind == CALIB:
                    self.calib = _json_or_none(chunk.payload) or self.calib
                yield chunk
                offset = f.tell()

    def ns_per_tick(self) -> float | None:
        """The best calibration the file holds (END, else the last CALIB, else
        META); read after ``chunks()`` went through the file."""
        value = self.latest("ns_per_tick", _positive_number)
        return float(value) if value is not None else None

    def latest(self, key: str, valid: Callable[[Any], bool] = lambda v: v is not None) -> Any:
        """The first valid value of `key` in END, else in the last CALIB, else
        in META (None if none has one); read after ``chunks()`` went through
        the file."""
        for record in (self.end, self.calib, self.meta):
            value = (record or {}).get(key)
            if valid(value):
                return value
        return None

    def symbols(self) -> dict[int, SymbolDef]:
        out: dict[int, SymbolDef] = {}
        for chunk in self.chunks():
            if chunk.kind == SYMBOLS:
                for s in unpack_symbols(chunk.payload):
                    out[s.id] = s
        return out


def _positive_number(value: Any) -> bool:
    # a calibration outside NS_PER_TICK_RANGE is damage, not a clock (NaN compares false)
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and NS_PER_TICK_RANGE[0] <= value <= NS_PER_TICK_RANGE[1]


def _json_or_none(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


_DECOMPRESSOR = zstandard.ZstdDecompressor()


def _read_chunk(f: IO[bytes], offset: int) -> tuple[Chunk | None, str]:
    head = f.read(_CHUNK.size)
    if not head:
        return None, ""
    if len(head) < _CHUNK.size:
        return None, "a chunk header is cut short"
    magic, kind, codec, _res, thread, stored_len, raw_len, crc = _CHUNK.unpack(head)
    if magic != CHUNK_MAGIC:
        return None, "bad chunk magic"
    if stored_len > MAX_CHUNK_BYTES or raw_len > MAX_CHUNK_BYTES:
        return None, "an impossible chunk length"
    stored = f.read(stored_len)
    if len(stored) < stored_len:
        return None, "a chunk is cut short"
    if zlib.crc32(stored) != crc:
        return None, "a chunk fails its checksum"
    if codec == RAW:
        payload = stored
    elif codec == ZSTD:
        try:
            payload = _DECOMPRESSOR.decompress(stored, max_output_size=raw_len)
        except zstandard.ZstdError:
            return None, "a chunk does not decompress"
    else:
        return None, f"unknown codec {codec}"
    if len(payload) != raw_len:
        return None, "a chunk has the wrong length"
    return Chunk(kind, thread, payload, offset), ""
