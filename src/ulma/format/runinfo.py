"""What a trace says about its run, read before its events are walked: the
symbol table, the clock calibration (in the END record), the program's pid and
threads.  ``scan`` is the first of an export's two passes over the file; it
checks every chunk but leaves the events compressed (the second pass reads
them, and adds what it finds wrong with them to ``Run.warnings``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from ulma.format import records, trace

SCALE_BITS: Final = 48


@dataclass(slots=True)
class Run:
    """What a trace says about its run, read before the events are walked."""

    path: str
    meta: dict[str, Any]
    end: dict[str, Any] | None
    frames: dict[int, records.Symbol]
    ns_per_tick: float
    start_ticks: int
    pid: int
    os_tids: dict[int, int]  # ring slot -> OS thread id
    events: dict[int, int]  # ring slot -> events in the file, in order of first appearance
    warnings: list[str] = field(default_factory=list)
    # the calibration of the text log written along with the trace (--log), if there was one
    text_ns_per_tick: float | None = None
    tasks: dict[int, str] = field(default_factory=dict)  # asyncio task number -> its name
    thread_names: dict[int, str] = field(default_factory=dict)  # OS thread id -> its Python name

    @property
    def hidden(self) -> frozenset[int]:
        """ulma's own bootstrap code: never exported, as it is never reported."""
        return frozenset(fid for fid, f in self.frames.items() if f.hidden)

    def frame(self, fid: int) -> records.Symbol:
        return self.frames.get(fid) or records.Symbol(fid, 0, 0, f"<unknown #{fid}>", "?", 0)

    def tid(self, slot: int) -> int:
        """The OS thread id, or the ring slot when the trace lost its END record."""
        return self.os_tids.get(slot, slot)

    def thread_name(self, slot: int) -> str:
        """"main thread 123", or the Python thread's name with its OS id ("worker-2 (thread
        124)"), or "thread 124" where the trace has no name for it."""
        tid = self.tid(slot)
        if slot not in self.os_tids:
            return f"thread slot {slot}"
        if tid == self.pid:
            return f"main thread {tid}"
        name = self.thread_names.get(tid)
        return f"{name} (thread {tid})" if name else f"thread {tid}"

    @property
    def scale(self) -> int:
        """ns per tick as a fixed-point integer (48 fraction bits): exact to well
        under a ns over days of ticks, and twice as fast as float-then-int."""
        return round(self.ns_per_tick * (1 << SCALE_BITS))

    @property
    def text_scale(self) -> int:
        """``scale`` for the text export: the --log's calibration when the run wrote one, so
        that export and log agree line for line (ulma.monitor.streams)."""
        return round((self.text_ns_per_tick or self.ns_per_tick) * (1 << SCALE_BITS))

    def ns(self, ticks: int) -> int:
        return (ticks - self.start_ticks) * self.scale >> SCALE_BITS


def scan(reader: trace.TraceReader) -> Run:
    """The first of two passes over the file: symbols, threads and the END record."""
    frames: dict[int, records.Symbol] = {}
    tasks: dict[int, str] = {}
    thread_names: dict[int, str] = {}
    events: dict[int, int] = {}
    warnings: list[str] = []
    for chunk in reader.chunks(events=False):  # the events are decompressed by the second pass only
        if chunk.kind == trace.EVENTS:
            events[chunk.thread] = events.get(chunk.thread, 0) + chunk.raw_length // records.EVENT_BYTES
        elif chunk.kind == trace.SYMBOLS:
            try:
                defs = trace.unpack_symbols(chunk.payload)
            except trace.TraceError as exc:
                warnings.append(f"symbols chunk at byte {chunk.offset} skipped: {exc}")
                continue
            for s in defs:
                if s.kind == records.SYM_TASK:  # a task's name: not a function's
                    tasks[s.id - records.TASK_SYMBOL_BASE] = s.name
                elif s.kind == records.SYM_THREAD:  # a thread's (the last given wins)
                    thread_names[s.id - records.THREAD_SYMBOL_BASE] = s.name
                else:
                    frames[s.id] = s
    warnings[:0] = reader.warnings
    end = reader.end
    meta = reader.meta
    if end is None:
        warnings.append("the trace has no end record: the run was cut short (times use the last "
                        "calibration written; thread ids are ring slots)")
    e = end or {}  # every value passed ulma.format.schema
    return Run(
        path=reader.path, meta=meta, end=end, frames=frames,
        ns_per_tick=reader.ns_per_tick() or 1.0,
        start_ticks=meta.get("start_ticks", 0), pid=e.get("program_pid", 0),
        os_tids={int(k): v for k, v in e.get("os_tid", {}).items()},
        events=events, warnings=warnings, text_ns_per_tick=reader.latest("text_ns_per_tick"), tasks=tasks,
        thread_names=thread_names)
