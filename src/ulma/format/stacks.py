"""Stack transitions from a trace file, for the exporters.

After ``runinfo.scan`` has read what every exporter needs before the first
event, ``walk`` replays each thread's events by the rules of the C
aggregator (``_core/aggregate.c``, written out in ``tests/unit/replay_model.py``)
and calls a sink's ``enter``/``leave`` for every frame that starts or ends,
one chunk at a time: memory holds the stacks, never the event stream.

Times given to sinks are integer ns since the session started (META
``start_ticks``), never decreasing within a thread (ticks that go backwards
are clamped, as the aggregator does, and so are ticks before the start, which
only a damaged file has).  A thread's frames nest exactly:
``leave`` gets the frame's start and its self time (its span less its
callees' spans), so sums of self times telescope to a root's span.
"""

from __future__ import annotations

import itertools
import struct
import sys
from collections.abc import Callable, Iterator
from typing import Final, Protocol

from ulma.format import records, trace
from ulma.format.runinfo import SCALE_BITS, Run

SLICE_EVENTS: Final = 8192  # records decoded at a time
MAX_FUNC_ID: Final = 1 << 24  # as aggregate.c: larger ids are corruption, counted as unmatched
_EVENT = struct.Struct("<QIBBH")
# what each event kind does to the stack: 1 enters a frame, 2 exits one, 3 restates the stack
_ACTION: Final = bytes(
    1 if k in (records.CALL, records.RESUME, records.THROW, records.C_CALL)
    else 2 if k in (records.RETURN, records.YIELD, records.UNWIND, records.C_RETURN)
    else 3 if k == records.SYNC else 0
    for k in range(256))


LeaveFn = Callable[[int, int, int, int, int, int], None]


class Sink(Protocol):
    """Receives one thread's frames as they start and end.

    ``kind`` is CALL, RESUME or THROW, or 0 for a frame restated by a SYNC
    group (already running: not a call).  ``parent`` is the id of the frame
    below (-1 at the bottom); it may be a hidden frame, which is never entered
    or left itself."""

    def enter(self, thread: int, t: int, fid: int, parent: int, kind: int) -> None: ...

    def leave(self, thread: int, t: int, fid: int, parent: int, start: int, self_ns: int) -> None: ...

    def gap(self, thread: int, start: int, end: int) -> None:
        """Events were lost between start and end: the stack was closed and restated."""


def _slices(data: bytes) -> Iterator[memoryview]:
    """A chunk in pieces of SLICE_EVENTS records: the columns of a whole chunk
    as Python ints would take ten times the chunk's size."""
    view = memoryview(data)
    step = SLICE_EVENTS * records.EVENT_BYTES
    for at in range(0, len(view), step):
        yield view[at:at + step]


def _columns(data: memoryview) -> tuple[list[int], list[int], list[int]]:
    """The records as three columns, ticks, ids and kind | flags << 8 | aux << 16,
    cut out with memoryview casts: faster than unpacking record by record."""
    if sys.byteorder != "little":  # the records are little-endian
        rows = [(t, i, k | f << 8 | a << 16) for t, i, k, f, a in _EVENT.iter_unpack(data)]
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    words = data.cast("I")
    return data.cast("Q")[0::2].tolist(), words[2::4].tolist(), words[3::4].tolist()


class ThreadWalk:
    """One thread's stack, replayed like aggregate.c (see the module doc)."""

    def __init__(self, thread: int, run: Run, hidden: frozenset[int]) -> None:
        self.thread = thread
        self.t0, self.scale = run.start_ticks, run.scale
        self.hidden = hidden
        self.fids: list[int] = []
        self.starts: list[int] = []  # ns
        self.childs: list[int] = []  # ns spent in callees so far
        self.events = 0
        self.last = 0  # ticks
        self.unmatched = 0
        self.sync_want = 0
        self.sync_ids: list[int] = []
        self.sync_flags = 0
        self.sync_ticks = 0

    def feed(self, data: memoryview, sink: Sink) -> None:
        # The hot loop: the common cases (a push; an exit of the top frame) are inlined.
        if not data:
            return
        fids, starts, childs, hidden = self.fids, self.starts, self.childs, self.hidden
        push_fid, push_start, push_child = fids.append, starts.append, childs.append
        pop_fid, pop_start, pop_child = fids.pop, starts.pop, childs.pop
        t0, scale, thread, action = self.t0, self.scale, self.thread, _ACTION
        enter, leave = sink.enter, sink.leave
        if self.events == 0:  # nothing is before the session's start (a damaged file may say so)
            self.last = max(_EVENT.unpack_from(data)[0], t0)
        last = self.last
        in_group = self.sync_want != 0  # inside a SYNC group, which only SYNC records continue
        self.events += len(data) // _EVENT.size
        for ticks, fid, code in zip(*_columns(data), strict=True):
            if ticks < last:
                ticks = last
            kind = code & 0xFF
            a = action[kind]
            if in_group and a != 3:
                self.sync_want, self.sync_ids, in_group = 0, [], False  # a broken group is dropped
            if a == 1:
                if fid < MAX_FUNC_ID:
                    t = (ticks - t0) * scale >> SCALE_BITS
                    parent = fids[-1] if fids else -1
                    push_fid(fid)
                    push_start(t)
                    push_child(0)
                    if fid not in hidden:
                        enter(thread, t, fid, parent, kind)
                else:
                    self.unmatched += 1
            elif a == 2:
                if fids and fids[-1] == fid:
                    t = (ticks - t0) * scale >> SCALE_BITS
                    pop_fid()
                    start = pop_start()
                    el = t - start
                    own = el - pop_child()
                    if childs:
                        childs[-1] += el
                    if fid not in hidden:
                        leave(thread, t, fid, fids[-1] if fids else -1, start, own)
                else:
                    self._exit_below(ticks, fid, leave)
            elif a == 3:
                self.last = last
                ticks = self._sync(ticks, fid, code >> 8 & 0xFF, code >> 16, sink)
                in_group = self.sync_want != 0
            last = ticks
        self.last = last

    def _exit_below(self, ticks: int, fid: int, leave: LeaveFn) -> None:
        """An exit of a frame below the top: the frames above it exit with it."""
        i = len(self.fids) - 1
        while i >= 0 and self.fids[i] != fid:
            i -= 1
        if i < 0:
            self.unmatched += 1
            return
        t = (ticks - self.t0) * self.scale >> SCALE_BITS
        while len(self.fids) > i:
            self._pop(t, leave)

    def _pop(self, t: int, leave: LeaveFn) -> None:
        fid = self.fids.pop()
        start = self.starts.pop()
        el = t - start
        own = el - self.childs.pop()
        if self.childs:
            self.childs[-1] += el
        if fid not in self.hidden:
            leave(self.thread, t, fid, self.fids[-1] if self.fids else -1, start, own)

    def _sync(self, ticks: int, fid: int, flags: int, aux: int, sink: Sink) -> int:
        """A SYNC record; returns the thread's new last tick (the model's rules)."""
        if self.sync_want and not flags & records.SYNC_FRAME:
            self.sync_want, self.sync_ids = 0, []  # a group is contiguous, or dropped
        if flags & records.SYNC_BEGIN:
            self.sync_want, self.sync_ids = aux, []
            self.sync_flags, self.sync_ticks = flags, ticks
            if aux == 0:
                self._apply_sync(sink)
            return self.last
        if flags & records.SYNC_FRAME and len(self.sync_ids) < self.sync_want:
            self.sync_ids.append(fid)
            if len(self.sync_ids) == self.sync_want:
                self._apply_sync(sink)
                return self.sync_ticks
            return self.last
        return ticks

    def _apply_sync(self, sink: Sink) -> None:
        close_at = (self.last - self.t0) * self.scale >> SCALE_BITS
        while self.fids:
            self._pop(close_at, sink.leave)
        self.sync_ticks = max(self.sync_ticks, self.last)  # only a damaged stream goes back
        at = (self.sync_ticks - self.t0) * self.scale >> SCALE_BITS
        if self.sync_flags & records.SYNC_AFTER_DROP:
            sink.gap(self.thread, close_at, at)
        for fid in self.sync_ids:
            if fid >= MAX_FUNC_ID:
                self.unmatched += 1
                continue
            parent = self.fids[-1] if self.fids else -1
            self.fids.append(fid)
            self.starts.append(at)
            self.childs.append(0)
            if fid not in self.hidden:
                sink.enter(self.thread, at, fid, parent, 0)
        self.sync_want, self.sync_ids = 0, []

    def close(self, sink: Sink) -> None:
        """The end of the trace: open frames end at the thread's last tick."""
        t = (self.last - self.t0) * self.scale >> SCALE_BITS
        while self.fids:
            self._pop(t, sink.leave)


def walk(reader: trace.TraceReader, run: Run, sink: Sink) -> dict[int, ThreadWalk]:
    """The second pass: every thread's frames into `sink`, chunk by chunk."""
    hidden = run.hidden
    threads: dict[int, ThreadWalk] = {}
    for chunk in reader.chunks():
        if chunk.kind != trace.EVENTS or not _whole(chunk, run):
            continue
        th = threads.get(chunk.thread)
        if th is None:
            th = threads[chunk.thread] = ThreadWalk(chunk.thread, run, hidden)
        for piece in _slices(chunk.payload):
            th.feed(piece, sink)
    for th in threads.values():
        th.close(sink)
    return threads


def _whole(chunk: trace.Chunk, run: Run) -> bool:
    if len(chunk.payload) % records.EVENT_BYTES == 0:
        return True
    run.warnings.append(f"events chunk at byte {chunk.offset} skipped: not whole 16-byte records")
    return False


class RecordSink(Protocol):
    def records(self, thread: int, times: list[int], ids: list[int], codes: list[int]) -> None:
        """One chunk of a thread's raw records as columns: ns (clamped never to go
        backwards within the thread), id, and kind | flags << 8 | aux << 16."""


def walk_records(reader: trace.TraceReader, run: Run, sink: RecordSink) -> None:
    """The second pass for formats that want the records themselves, chunk by chunk."""
    last: dict[int, int] = {}
    t0, scale = run.start_ticks, run.scale
    for chunk in reader.chunks():
        if chunk.kind != trace.EVENTS or not _whole(chunk, run):
            continue
        for piece in _slices(chunk.payload):
            ticks, ids, codes = _columns(piece)
            first = last.get(chunk.thread, max(ticks[0], t0))  # as ThreadWalk: never before the start
            clamped = list(itertools.accumulate(ticks, max, initial=first))
            last[chunk.thread] = clamped[-1]
            sink.records(chunk.thread, [(t - t0) * scale >> SCALE_BITS for t in clamped[1:]], ids, codes)
