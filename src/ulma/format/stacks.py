"""Stacks from a trace file, for the exporters: the C replay (``_core/replay.c``).

After ``runinfo.scan`` has read what every exporter needs before the first
event, ``replay`` feeds each thread's events to the same stack rules the
aggregator runs (``_core/walk.h``; written out slowly in
``tests/unit/replay_model.py``), one slice of a chunk at a time, so memory
holds stacks, never the event stream.  What it makes depends on ``what``:

- ``FRAMES``: every frame that starts or ends, handed to a sink's
  ``enter``/``leave``/``gap`` in batches of packed transitions (with
  ``ENDS_ONLY``, no starts: for a writer that writes a frame as it ends);
- ``TREE`` (``TREE_PER_THREAD``): the distinct stacks with self time and
  entries, read from the returned replay's ``tree()``;
- ``PSTATS``: cProfile's figures per function and caller pair (``pstats()``).

Times are integer ns since the session started (META ``start_ticks``), never
decreasing within a thread (ticks that go backwards are clamped, as the
aggregator does, and so are ticks before the start, which only a damaged file
has).  A thread's frames nest exactly: ``leave`` gets the frame's start and
its self time (its span less its callees' spans), so sums of self times
telescope to a root's span.  Hidden frames (ulma's own code) are walked but
never entered or left; ``parent`` may name one.
"""

from __future__ import annotations

import itertools
import struct
import sys
from collections.abc import Callable, Iterator
from typing import Final, Protocol

from ulma import _core
from ulma.format import records, trace
from ulma.format.runinfo import SCALE_BITS, Run

SLICE_EVENTS: Final = 8192  # records replayed (or decoded) at a time
FRAMES: Final = _core.REPLAY_FRAMES
TREE: Final = _core.REPLAY_TREE
TREE_PER_THREAD: Final = _core.REPLAY_TREE_PER_THREAD
PSTATS: Final = _core.REPLAY_PSTATS
ENDS_ONLY: Final = _core.REPLAY_ENDS_ONLY  # with FRAMES: frames as they end (and gaps) only
COUNTERS: Final = _core.REPLAY_COUNTERS  # with FRAMES: native counters' values too
_TRANSITION = struct.Struct("<qqqIiIBBH")  # replay.h's ulma_transition
assert _TRANSITION.size == _core.TRANSITION_BYTES
_ENTER, _LEAVE, _GAP = 1, 2, 3
_EVENT = struct.Struct("<QIBBH")


class Sink(Protocol):
    """Receives one thread's frames as they start and end.

    ``kind`` is CALL, RESUME, THROW or C_CALL, or 0 for a frame restated by a
    SYNC group (already running: not a call).  ``parent`` is the id of the
    frame below (-1 at the bottom); it may be a hidden frame, which is never
    entered or left itself."""

    def enter(self, thread: int, t: int, fid: int, parent: int, kind: int) -> None: ...

    def leave(self, thread: int, t: int, fid: int, parent: int, start: int, self_ns: int) -> None: ...

    def gap(self, thread: int, start: int, end: int) -> None:
        """Events were lost between start and end: the stack was closed and restated."""


def _slices(data: bytes) -> Iterator[memoryview]:
    """A chunk in pieces of SLICE_EVENTS records: what one piece makes stays small."""
    view = memoryview(data)
    step = SLICE_EVENTS * records.EVENT_BYTES
    for at in range(0, len(view), step):
        yield view[at:at + step]


def deliver(transitions: bytes, sink: Sink) -> None:
    """Hands packed transitions (``Replay.take()``) to a sink, in order."""
    enter, leave, gap = sink.enter, sink.leave, sink.gap
    for t, start, own, fid, parent, thread, op, kind, _pad in _TRANSITION.iter_unpack(transitions):
        if op == _LEAVE:
            leave(thread, t, fid, parent, start, own)
        elif op == _ENTER:
            enter(thread, t, fid, parent, kind)
        elif op == _GAP:
            gap(thread, t, start)


def replay(reader: trace.TraceReader, run: Run, what: int,
           take: Callable[[_core.Replay], None] | None = None) -> _core.Replay:
    """The second pass: every thread's events through the C replay, chunk by chunk; with FRAMES,
    `take` takes the frames made after each piece (``Replay.take()``, or a writer's own).
    Returns the replay (closed)."""
    r = _core.Replay(run.start_ticks, run.scale, what, run.hidden)
    for chunk in reader.chunks():
        if chunk.kind != trace.EVENTS or not _whole(chunk, run):
            continue
        for piece in _slices(chunk.payload):
            r.feed(chunk.thread, piece)
            if take is not None:
                take(r)
    r.close()
    if take is not None:
        take(r)
    return r


def walk(reader: trace.TraceReader, run: Run, sink: Sink) -> _core.Replay:
    """Every thread's frames into `sink`, chunk by chunk."""
    return replay(reader, run, FRAMES, lambda r: deliver(r.take(), sink))


def _whole(chunk: trace.Chunk, run: Run) -> bool:
    if len(chunk.payload) % records.EVENT_BYTES == 0:
        return True
    run.warnings.append(f"events chunk at byte {chunk.offset} skipped: not whole 16-byte records")
    return False


def _columns(data: memoryview) -> tuple[list[int], list[int], list[int]]:
    """The records as three columns, ticks, ids and kind | flags << 8 | aux << 16,
    cut out with memoryview casts: faster than unpacking record by record."""
    if sys.byteorder != "little":  # the records are little-endian
        rows = [(t, i, k | f << 8 | a << 16) for t, i, k, f, a in _EVENT.iter_unpack(data)]
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    words = data.cast("I")
    return data.cast("Q")[0::2].tolist(), words[2::4].tolist(), words[3::4].tolist()


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
            first = last.get(chunk.thread, max(ticks[0], t0))  # as the replay: never before the start
            clamped = list(itertools.accumulate(ticks, max, initial=first))
            last[chunk.thread] = clamped[-1]
            sink.records(chunk.thread, [(t - t0) * scale >> SCALE_BITS for t in clamped[1:]], ids, codes)


def walk_slices(reader: trace.TraceReader, run: Run, take: Callable[[int, memoryview], None]) -> None:
    """The second pass for formats that read the records as stored: `take(thread, piece)`, a
    piece of a chunk (whole records) at a time, in the file's order."""
    for chunk in reader.chunks():
        if chunk.kind != trace.EVENTS or not _whole(chunk, run):
            continue
        for piece in _slices(chunk.payload):
            take(chunk.thread, piece)
