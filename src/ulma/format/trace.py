"""The trace file (``run.ulma``): the event stream and the symbol table, in
self-describing chunks appended while the program runs.

Layout (little-endian)::

    file header  32 B   magic "ULMATRCE" | u16 version | u16 header bytes | u32 flags
                        | u64 created (CLOCK_REALTIME ns) | u64 crc32 of the 24 bytes before
    chunk        24 B   magic "CHNK" | u8 kind | u8 codec | u16 reserved | u32 thread
                        | u32 stored length | u32 raw length
                        | u32 crc32 of the 20 header bytes before it, then of the stored bytes
                 then the stored bytes (raw, or zstd-compressed when codec = 1)

Format 2 (this one) puts the headers under the checksums; format 1 (ulma
before it) checked the stored bytes only, so a damaged kind or thread went
unnoticed.  Format 1 files are still read, with format 1's checks.

Chunk kinds: META (JSON: clock start readings, pid, host, Python, engine, the
--only/--exclude scope),
SYMBOLS (packed definitions, see ``_SYMBOL``), EVENTS (16-byte records of one
thread), CALIB (JSON: the clock calibration so far, so a file cut short still
converts ticks well, and once the agent started what it measured there,
``AGENT_KEYS``: the first CALIB comes before the program's first events, the
next about once a second), END (JSON: run time, drops, final calibration, the
agent's figures, the functions switched off while running and for how long).  A file cut short --
the monitor or the machine killed -- reads up to its last complete chunk and
the reader says how much was lost.  Nothing in a trace is ever executed.

What a reader spends on a file is bounded by the file, whatever it holds:
each chunk's raw length is at most its kind's maximum (``MAX_RAW``: an events
chunk holds at most ``EVENTS_PER_CHUNK`` records; format 1: 64 MiB), a zstd
frame is decompressed into at most the chunk's raw length (a frame whose header
claims more, or that yields more, or needs a window above ``MAX_WINDOW``, is
damage: its content size is never trusted for an allocation), and a file yields at most
``budget(size)`` decompressed bytes in all -- ``BUDGET_RATIO`` times its size
(real traces expand about 5 times), and never less than ``BUDGET_FLOOR``;
past it the reader stops with a warning, as for a file cut short.  META,
CALIB and END are checked against ``ulma.format.schema``.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import time
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Final

import zstandard

from ulma.format import files, records, schema
from ulma.phases import site

# the monitor's own phases, seen when ulma profiles the monitor (ulma.phases)
_WRITE = site("trace write")
_COMPRESS = site("compress")

MAGIC: Final = b"ULMATRCE"
VERSION: Final = 2  # 2: checksums over the file and chunk headers too
OLDEST_VERSION: Final = 1
CHUNK_MAGIC: Final = b"CHNK"

META, SYMBOLS, EVENTS, END, CALIB = 1, 2, 3, 4, 5
KIND_NAMES: Final = {META: "meta", SYMBOLS: "symbols", EVENTS: "events", END: "end", CALIB: "calib"}
RAW, ZSTD = 0, 1

_HEADER = struct.Struct("<8sHHIQQ")
_CHUNK = struct.Struct("<4sBBHIIII")
_SYMBOL = struct.Struct("<IHHIII")  # id, kind, flags, line, name bytes, file bytes
EVENTS_PER_CHUNK: Final = 1 << 16  # records in a full events chunk (1 MiB)
SYMBOLS_CHUNK_BYTES: Final = 1 << 20  # the writer starts a new symbols chunk past this
MAX_SYMBOL_TEXT: Final = 1 << 16  # bytes of a symbol's name or file kept (the writer cuts longer ones)
# The largest raw length of each kind of chunk (format 2); unknown kinds: the largest of these.
MAX_RAW: Final = {
    EVENTS: EVENTS_PER_CHUNK * records.EVENT_BYTES,
    SYMBOLS: SYMBOLS_CHUNK_BYTES + _SYMBOL.size + 2 * MAX_SYMBOL_TEXT,
    META: schema.MAX_JSON_BYTES, END: schema.MAX_JSON_BYTES, CALIB: schema.MAX_JSON_BYTES,
}
MAX_CHUNK_BYTES: Final = 64 << 20  # format 1's limit for every kind (its events chunks ran past 1 MiB)
MAX_WINDOW: Final = 8 << 20  # a zstd window the writer (level 1, chunks of 1 MiB) never exceeds
BUDGET_RATIO: Final = 64  # decompressed bytes a file may yield per byte of its size ...
BUDGET_FLOOR: Final = 32 << 20  # ... and at least this many, whatever its size


def budget(size: int) -> int:
    """The decompressed bytes a trace of `size` bytes may yield in one pass."""
    return max(BUDGET_FLOOR, BUDGET_RATIO * size)


# The agent's figures (Session.agent_info) kept in CALIB and END records.
AGENT_KEYS: Final = ("probe_ns", "scope_probe_ns", "scope_end_probe_ns", "cpu_samples", "schedstat",
                      "native_calls", "program_start_ticks")


class TraceError(Exception):
    """The file is not a trace this version can read; the message says why."""


SymbolDef = records.Symbol  # the trace stores the symbol table's own definitions


def _text(text: str) -> bytes:
    """UTF-8, cut to MAX_SYMBOL_TEXT bytes at a character boundary."""
    data = text.encode("utf-8", "replace")
    if len(data) > MAX_SYMBOL_TEXT:
        data = data[:MAX_SYMBOL_TEXT].decode("utf-8", "ignore").encode()
    return data


def pack_symbols(symbols: list[SymbolDef]) -> Iterator[bytes]:
    """The definitions in chunks of about SYMBOLS_CHUNK_BYTES (at most MAX_RAW[SYMBOLS])."""
    out: list[bytes] = []
    size = 0
    for s in symbols:
        name, file = _text(s.name), _text(s.file)
        out.append(_SYMBOL.pack(s.id, s.kind, s.flags, s.line, len(name), len(file)) + name + file)
        size += len(out[-1])
        if size >= SYMBOLS_CHUNK_BYTES:
            yield b"".join(out)
            out, size = [], 0
    if out:
        yield b"".join(out)


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
        self._pending: dict[int, bytearray] = {}
        self.bytes_raw = 0
        self.bytes_written = 0
        self._write(file_header(VERSION, time.time_ns()))
        self.chunk(META, json.dumps(meta).encode())

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        with _WRITE:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        self.bytes_written += len(data)

    def chunk(self, kind: int, payload: bytes, thread: int = 0) -> None:
        stored, codec = payload, RAW
        if self._zstd is not None and len(payload) > 256:
            with _COMPRESS:
                packed = self._zstd.compress(payload)
            if len(packed) < len(payload):
                stored, codec = packed, ZSTD
        self.bytes_raw += len(payload)
        self._write(chunk_header(kind, codec, thread, stored, len(payload)) + stored)

    def symbols(self, symbols: list[SymbolDef]) -> None:
        for data in pack_symbols(symbols):
            self.chunk(SYMBOLS, data)

    def events(self, thread: int, data: bytes) -> None:
        """Buffers a thread's records; a chunk of EVENTS_PER_CHUNK records goes out
        as soon as there are that many (never more: the reader refuses more)."""
        pending = self._pending.setdefault(thread, bytearray())
        pending += data
        full = MAX_RAW[EVENTS]
        while len(pending) >= full:
            self.chunk(EVENTS, bytes(pending[:full]), thread)
            del pending[:full]

    def _flush(self, thread: int) -> None:
        pending = self._pending.pop(thread, None)
        if pending:
            self.chunk(EVENTS, bytes(pending), thread)

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
    length: int = -1  # the raw length; the payload's, unless an events chunk was passed over

    @property
    def raw_length(self) -> int:
        return len(self.payload) if self.length < 0 else self.length


def file_header(version: int, created: int) -> bytes:
    """The 32-byte file header; from format 2 its last word is the crc32 of the rest."""
    head = _HEADER.pack(MAGIC, version, _HEADER.size, 0, created, 0)
    return head if version < 2 else head[:24] + struct.pack("<Q", zlib.crc32(head[:24]))


def chunk_header(kind: int, codec: int, thread: int, stored: bytes, raw_length: int,
                 version: int = VERSION) -> bytes:
    """A chunk's 24-byte header; from format 2 its crc32 covers the header's other
    fields as well as the stored bytes."""
    head = _CHUNK.pack(CHUNK_MAGIC, kind, codec, 0, thread, len(stored), raw_length, 0)[:20]
    return head + struct.pack("<I", zlib.crc32(stored, _header_crc(head, version)))


def _header_crc(head: bytes, version: int) -> int:
    """Where a chunk's crc32 starts: format 1 left the header out."""
    return zlib.crc32(head[:20]) if version >= 2 else 0


_JSON_KINDS: Final = {META: schema.Meta, END: schema.End, CALIB: schema.Calib}


@dataclass(slots=True)
class TraceReader:
    """Reads a trace, checking every chunk.  Damage after the last good chunk
    is not an error: ``warnings`` says what was cut.  ``meta``, ``end`` and
    ``calib`` hold only what ``ulma.format.schema`` lets through."""

    path: str
    meta: dict[str, Any] = field(default_factory=dict)  # schema.Meta
    end: dict[str, Any] | None = None  # schema.End
    calib: dict[str, Any] | None = None  # schema.Calib: the last CALIB record read
    warnings: list[str] = field(default_factory=list)
    size: int = 0
    version: int = 0
    _first: int = field(default=0, init=False)
    _meta_warnings: list[str] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        try:
            self.size = os.path.getsize(self.path)
            with open(self.path, "rb") as f:
                head = f.read(_HEADER.size)
        except OSError as exc:
            raise TraceError(f"cannot read {self.path}: {exc.strerror}") from None
        if len(head) < _HEADER.size:
            raise TraceError(f"{self.path} is not an ulma trace (too short: {self.size} bytes)")
        magic, version, header_bytes, _flags, _created, crc = _HEADER.unpack(head)
        if magic != MAGIC:
            raise TraceError(f"{self.path} is not an ulma trace (bad magic)")
        if not OLDEST_VERSION <= version <= VERSION:
            raise TraceError(f"{self.path} is trace format {version}; this ulma reads formats "
                             f"{OLDEST_VERSION} up to {VERSION}")
        if version >= 2 and crc != zlib.crc32(head[:24]):
            raise TraceError(f"{self.path} has a damaged header (it fails its checksum)")
        if header_bytes < _HEADER.size:
            raise TraceError(f"{self.path} has a damaged header")
        self.version, self._first = version, header_bytes
        with contextlib.closing(self._chunks(parse=False)) as reading:
            first = next(reading, None)
        if first is None or first.kind != META:
            problem = f" ({self.warnings[0].split(' at byte')[0]})" if self.warnings else ""
            raise TraceError(f"{self.path} has no readable metadata chunk{problem}")
        try:
            self.meta, bad = schema.check(schema.Meta, schema.parse(first.payload))
        except schema.Damaged as exc:
            raise TraceError(f"{self.path} has damaged metadata ({exc})") from None
        if bad:
            self._meta_warnings.append(_fields_ignored("metadata", bad))
        self.warnings[:] = self._meta_warnings  # chunks() is read again in full by the caller

    def chunks(self, *, events: bool = True) -> Iterator[Chunk]:
        """Every intact chunk in order; stops at the first damaged one, or when the
        file has yielded its decompression budget.  With ``events=False`` an events
        chunk is checked (header, lengths, checksum, a zstd frame's claimed size,
        the budget) but not decompressed: its payload is empty and ``raw_length``
        says how long it is; a frame that then fails to decompress is found by the
        pass that reads the events, which stops there with the same warning."""
        return self._chunks(parse=True, events=events)

    def _chunks(self, *, parse: bool, events: bool = True) -> Generator[Chunk]:
        self.warnings[:] = self._meta_warnings
        left = budget(self.size)
        with open(self.path, "rb") as f:
            offset = self._first
            f.seek(offset)
            while True:
                chunk, problem = _read_chunk(f, self.version, left, events)
                if chunk is None:
                    if problem:
                        lost = self.size - offset
                        self._warn(f"{problem} at byte {offset}: the last {lost} bytes "
                                   "of the trace were not read")
                    return
                left -= chunk.raw_length
                chunk.offset = offset
                if parse and chunk.kind in (END, CALIB):
                    self._record(chunk)
                yield chunk
                offset = f.tell()

    def _record(self, chunk: Chunk) -> None:
        name = KIND_NAMES[chunk.kind]
        try:
            values, bad = schema.check(_JSON_KINDS[chunk.kind], schema.parse(chunk.payload))
        except schema.Damaged as exc:
            self._warn(f"the {name} record at byte {chunk.offset} is damaged ({exc}): ignored")
            return
        if bad:
            self._warn(_fields_ignored(f"the {name} record", bad))
        if chunk.kind == END:
            self.end = values
        else:
            self.calib = values

    def _warn(self, message: str) -> None:
        if message not in self.warnings:  # a CALIB a second: each problem once
            self.warnings.append(message)

    def ns_per_tick(self) -> float | None:
        """The best calibration the file holds (END, else the last CALIB, else
        META); read after ``chunks()`` went through the file."""
        value = self.latest("ns_per_tick")
        return float(value) if value is not None else None

    def latest(self, key: str, valid: Callable[[Any], bool] = lambda v: v is not None) -> Any:
        """The first valid value of `key` in END, else in the last CALIB, else
        in META (None if none has one); read after ``chunks()`` went through
        the file.  Every value there passed ``ulma.format.schema``."""
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


def _fields_ignored(record: str, keys: list[str]) -> str:
    return (f"{record} has {', '.join(keys)} not finite, out of range or of the wrong type: "
            "ignored")


_DECOMPRESSOR = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)


def _read_chunk(f: IO[bytes], version: int, left: int, events: bool = True) -> tuple[Chunk | None, str]:
    """The next chunk, or None and what is wrong (nothing: the end of the file).
    `left`: the decompressed bytes the file may still yield; `events`: False to pass
    over an events chunk's payload once its checks short of decompressing pass."""
    head = f.read(_CHUNK.size)
    if not head:
        return None, ""
    if len(head) < _CHUNK.size:
        return None, "a chunk header is cut short"
    magic, kind, codec, _res, thread, stored_len, raw_len, crc = _CHUNK.unpack(head)
    if magic != CHUNK_MAGIC:
        return None, "bad chunk magic"
    limit = MAX_CHUNK_BYTES if version < 2 else MAX_RAW.get(kind, max(MAX_RAW.values()))
    if stored_len > limit or raw_len > limit:
        return None, f"an impossible chunk length ({max(stored_len, raw_len)} bytes; at most {limit})"
    stored = f.read(stored_len)
    if len(stored) < stored_len:
        return None, "a chunk is cut short"
    if zlib.crc32(stored, _header_crc(head, version)) != crc:
        return None, "a chunk fails its checksum"
    if raw_len > left:
        return None, (f"the trace expands to more than {BUDGET_RATIO} times its size (a real one: "
                      f"about 5; at least {BUDGET_FLOOR >> 20} MiB is always read)")
    if codec == RAW:
        payload = stored
    elif codec == ZSTD and not events and kind == EVENTS:
        claimed = _claimed(stored)
        if claimed > raw_len:
            return None, f"a zstd frame claims {claimed} bytes, more than its chunk's {raw_len}"
        if claimed == -2:
            return None, "a chunk does not decompress"
        return Chunk(kind, thread, b"", 0, raw_len), ""
    elif codec == ZSTD:
        try:
            claimed = zstandard.frame_content_size(stored)
            if claimed > raw_len:  # -1: not in the frame header
                return None, f"a zstd frame claims {claimed} bytes, more than its chunk's {raw_len}"
            # at most raw_len bytes come out (the claim above is never used to allocate more)
            payload = _DECOMPRESSOR.decompress(stored, max_output_size=raw_len, allow_extra_data=False)
        except zstandard.ZstdError:
            return None, "a chunk does not decompress"
    else:
        return None, f"unknown codec {codec}"
    if len(payload) != raw_len:
        return None, "a chunk has the wrong length"
    if not events and kind == EVENTS:
        return Chunk(kind, thread, b"", 0, raw_len), ""
    return Chunk(kind, thread, payload, 0), ""


def _claimed(stored: bytes) -> int:
    """A zstd frame's content size as its header claims it: -1 when it says none, -2
    when the header cannot be read (then the frame does not decompress either)."""
    try:
        return int(zstandard.frame_content_size(stored))
    except zstandard.ZstdError:
        return -2
