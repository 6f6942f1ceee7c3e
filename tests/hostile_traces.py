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
import resource
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import hypothesis.strategies as st

from ulma.format import records, trace

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


def write(path: Path, t: HostileTrace) -> None:
    """Writes `t` through the real writer (so every chunk is intact and decompresses)."""
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
