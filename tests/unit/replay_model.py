"""Pure-Python models of the C replays: ``ThreadModel`` the totals of
``_core/aggregate.c``, ``FrameWalk`` the frames of ``_core/replay.c`` (both
follow the stack rules of ``_core/walk.h``), written out slowly so the fast
code can be checked against them."""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field
from typing import Protocol

from ulma.format import records
from ulma.format.runinfo import SCALE_BITS, Run

MAX_FUNC_ID = 1 << 24
MAX_SPAN_TICKS = 1 << 62  # walk.h ULMA_MAX_SPAN_TICKS: a tick further from the first is damage
ENTER = {records.CALL, records.RESUME, records.THROW}
EXIT = {records.RETURN, records.YIELD, records.UNWIND}
# the other records the aggregator reads (its `record` hook), each ending a coroutine's
# "record right after" state as a call or return does
RECORDED = {records.C_CALL, records.C_RETURN, records.SCOPE_BEGIN, records.SCOPE_END, records.MARK,
            records.COUNTER}


@dataclass
class Frame:
    id: int
    start: int
    child: int = 0
    edge: tuple[int, int] | None = None


@dataclass
class Suspended:
    """Times suspended in await: every (begin, end) pair, and begins still open."""
    closed: int = 0
    open: list[int] = field(default_factory=list)

    def begin(self, t: int) -> None:
        self.open.append(t)

    def end(self, t: int) -> None:
        if self.open:  # which begin it pairs with does not change the sum
            self.closed += t - self.open.pop()

    def at(self, now: int) -> int:
        if self.open and not now:
            return 0
        return self.closed + sum(now - t for t in self.open)


@dataclass
class Totals:
    calls: int = 0
    resumes: int = 0
    self: int = 0
    total: int = 0
    awaiting: Suspended = field(default_factory=Suspended)
    awaiting_self: Suspended = field(default_factory=Suspended)


@dataclass
class EdgeTotals:
    calls: int = 0
    resumes: int = 0
    total: int = 0
    active: int = 0
    awaiting: Suspended = field(default_factory=Suspended)


@dataclass
class ThreadModel:
    funcs: dict[int, Totals] = field(default_factory=dict)
    active: dict[int, int] = field(default_factory=dict)
    edges: dict[tuple[int, int], EdgeTotals] = field(default_factory=dict)
    stack: list[Frame] = field(default_factory=list)
    events: int = 0
    last: int = 0
    first: int = 0
    lost: int = 0
    unmatched: int = 0
    sync_want: int = 0
    sync_ids: list[int] = field(default_factory=list)
    sync_flags: int = 0
    sync_ticks: int = 0
    # coroutines (aggregate.h): the id of a coroutine that just yielded; one just resumed, and when
    after_yield: int | None = None
    resumed: tuple[int, int] | None = None
    # native counters (walk.h): a first record's site and high bits, waiting for its value;
    # per site [values, last, least, most, sum, tick of the last]
    counting: tuple[int, int] | None = None
    counters: dict[int, list[int]] = field(default_factory=dict)

    def counter(self, e: records.Event, t: int) -> None:
        """A counter's two records (records.h): the value comes with the second."""
        value = counter_value(self, e)
        if value is None:
            return
        site, v = value
        c = self.counters.get(site)
        if c is None:
            self.counters[site] = [1, v, v, v, v, t]
            return
        c[0] += 1
        c[2], c[3], c[4] = min(c[2], v), max(c[3], v), c[4] + v
        if t >= c[5]:
            c[1], c[5] = v, t

    def coroutine(self, e: records.Event, t: int) -> None:
        """Before a CALL-like or RETURN-like record is applied: the rules of
        a coroutine's suspensions (aggregate.h, "Coroutines")."""
        if self.resumed is not None:
            fid, at = self.resumed
            self.resumed = None
            if self.stack and self.stack[-1].id == fid:
                if (e.flags & records.EVF_AWAIT and e.kind in (records.RESUME, records.THROW)
                        and e.id < MAX_FUNC_ID):
                    self.edges.setdefault((fid, e.id), EdgeTotals()).awaiting.end(at)
                else:
                    self.funcs[fid].awaiting_self.end(at)
        after, self.after_yield = self.after_yield, None
        if not e.flags & records.EVF_AWAIT or e.id >= MAX_FUNC_ID:
            return
        if e.kind in (records.RESUME, records.THROW):
            f = self.funcs.setdefault(e.id, Totals())
            if f.awaiting.open:
                f.awaiting.end(t)
                self.resumed = (e.id, t)
        elif e.kind == records.YIELD and self.stack and self.stack[-1].id == e.id:
            f = self.funcs[e.id]
            f.awaiting.begin(t)
            if after is not None:  # it awaited the coroutine that yielded just before
                self.edges.setdefault((e.id, after), EdgeTotals()).awaiting.begin(t)
            else:
                f.awaiting_self.begin(t)
            self.after_yield = e.id

    def push(self, fid: int, t: int, kind: int) -> None:
        if fid >= MAX_FUNC_ID:
            self.unmatched += 1
            return
        frame = Frame(fid, t)
        if self.stack:
            frame.edge = (self.stack[-1].id, fid)
            e = self.edges.setdefault(frame.edge, EdgeTotals())
            e.active += 1
            if kind == records.CALL:
                e.calls += 1
            elif kind:
                e.resumes += 1
        f = self.funcs.setdefault(fid, Totals())
        if kind == records.CALL:
            f.calls += 1
        elif kind:
            f.resumes += 1
        self.active[fid] = self.active.get(fid, 0) + 1
        self.stack.append(frame)

    def pop(self, t: int) -> None:
        frame = self.stack.pop()
        el = t - frame.start
        f = self.funcs[frame.id]
        f.self += max(el - frame.child, 0)
        self.active[frame.id] -= 1
        if self.active[frame.id] == 0:
            f.total += el
        if frame.edge is not None:
            e = self.edges[frame.edge]
            e.active -= 1
            if e.active == 0:
                e.total += el
        if self.stack:
            self.stack[-1].child += el

    def exit(self, fid: int, t: int) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i].id == fid:
                while len(self.stack) > i:
                    self.pop(t)
                return
        self.unmatched += 1

    def apply_sync(self) -> None:
        close_at = self.last
        if self.sync_flags & records.SYNC_RESTATE:  # nothing lost: the old stack ran until then
            close_at = max(close_at, self.sync_ticks)
        while self.stack:
            self.pop(close_at)
        self.sync_ticks = max(self.sync_ticks, close_at)  # only a damaged stream goes back
        if self.sync_flags & records.SYNC_AFTER_DROP:
            self.lost += self.sync_ticks - close_at
        for fid in self.sync_ids:
            self.push(fid, self.sync_ticks, 0)
        self.sync_want = 0
        self.sync_ids = []

    def feed(self, events: list[records.Event]) -> None:
        for e in events:
            t = e.ticks
            if self.events == 0:
                self.last = self.first = t
            if t < self.last or t - self.first > MAX_SPAN_TICKS:  # back, or far beyond: damage
                t = self.last
            self.events += 1
            if self.sync_want and not (e.kind == records.SYNC and e.flags & records.SYNC_FRAME):
                self.sync_want, self.sync_ids = 0, []  # a group is contiguous, or dropped
            if e.kind in ENTER or e.kind in EXIT or e.kind in RECORDED:
                self.coroutine(e, t)
            if e.kind in ENTER:
                self.push(e.id, t, e.kind)
            elif e.kind in EXIT or e.kind == records.SCOPE_END:
                self.exit(e.id, t)
            elif e.kind == records.SCOPE_BEGIN:  # a native scope: entered as a C function is (a call)
                self.push(e.id, t, records.CALL)
            elif e.kind == records.MARK:  # an instant: a frame of no length
                self.push(e.id, t, records.CALL)
                self.exit(e.id, t)
            elif e.kind == records.COUNTER:
                self.counter(e, t)
            elif e.kind == records.SYNC:
                if e.flags & records.SYNC_BEGIN:
                    self.sync_want, self.sync_ids = e.aux, []
                    self.sync_flags, self.sync_ticks = e.flags, t
                    t = self.last
                    if e.aux == 0:
                        self.apply_sync()
                        if e.flags & records.SYNC_RESTATE:
                            t = self.sync_ticks
                elif e.flags & records.SYNC_FRAME and len(self.sync_ids) < self.sync_want:
                    self.sync_ids.append(e.id)
                    t = self.last
                    if len(self.sync_ids) == self.sync_want:
                        self.apply_sync()
                        t = self.sync_ticks
            self.last = t

    def close(self) -> None:
        while self.stack:
            self.pop(self.last)
        # coroutines still suspended: until the thread's last tick
        for f in self.funcs.values():
            for w in (f.awaiting, f.awaiting_self):
                w.closed, w.open = w.at(self.last) if w.open else w.closed, []
        for e in self.edges.values():
            e.awaiting.closed, e.awaiting.open = e.awaiting.at(self.last) if e.awaiting.open \
                else e.awaiting.closed, []
        self.resumed = self.after_yield = None


def snapshot(threads: list[ThreadModel], now: int = 0, *, awaits: bool = True) -> tuple[
        list[tuple[int, int, int, int, int]], list[tuple[int, int, int, int, int]]]:
    """Merged totals in the C snapshot's shape; with `now`, open frames count to now.
    `awaits`: with coroutines' time suspended (the aggregator's totals); without it,
    the frames as they ran (the exporters' replay: a suspended coroutine is on no
    thread's stack, and pstats counts as cProfile, which times resumptions only)."""
    funcs: dict[int, Totals] = {}
    edges: dict[tuple[int, int], EdgeTotals] = {}
    awaited: dict[int, list[int]] = {}  # fid -> [suspended, of it not awaiting a coroutine]
    edge_awaited: dict[tuple[int, int], int] = {}
    for th in threads:
        for fid, f in th.funcs.items():
            m = funcs.setdefault(fid, Totals())
            m.calls += f.calls
            m.resumes += f.resumes
            m.self += f.self
            m.total += f.total
            got = awaited.setdefault(fid, [0, 0, 0, 0])
            got[0] += f.awaiting.closed + sum(now - t for t in f.awaiting.open)
            got[1] += len(f.awaiting.open)
            got[2] += f.awaiting_self.closed + sum(now - t for t in f.awaiting_self.open)
            got[3] += len(f.awaiting_self.open)
        for key, e in th.edges.items():
            me = edges.setdefault(key, EdgeTotals())
            me.calls += e.calls
            me.resumes += e.resumes
            me.total += e.total
            edge_awaited[key] = edge_awaited.get(key, 0) + e.awaiting.at(now)
        if now and th.stack:
            t = max(now, th.last)
            above = 0
            for frame in reversed(th.stack):
                el = t - frame.start
                funcs[frame.id].self += max(el - frame.child - above, 0)
                above = el
            seen_f: set[int] = set()
            seen_e: set[tuple[int, int]] = set()
            for frame in th.stack:
                el = t - frame.start
                if frame.id not in seen_f:
                    seen_f.add(frame.id)
                    funcs[frame.id].total += el
                if frame.edge is not None and frame.edge not in seen_e:
                    seen_e.add(frame.edge)
                    edges[frame.edge].total += el
    # a coroutine's time suspended: in its total, and (but what awaited another) in its self time;
    # never a sum of bare ticks while one is still open with no `now` to end it
    for fid, (aw, n, aw_self, n_self) in (awaited.items() if awaits else ()):
        aw = 0 if n and not now else aw
        aw_self = min(0 if n_self and not now else aw_self, aw)
        funcs[fid].self += aw_self
        funcs[fid].total += aw
    for key, aw in (edge_awaited.items() if awaits else ()):
        edges[key].total += aw
    f_out = sorted((fid, f.calls, f.resumes, f.self, f.total) for fid, f in funcs.items()
                   if f.calls or f.resumes or f.self or f.total)
    e_out = sorted((c, d, e.calls, e.resumes, e.total) for (c, d), e in edges.items()
                   if e.calls or e.resumes or e.total)
    return f_out, e_out


class _Counting(Protocol):
    counting: tuple[int, int] | None
    unmatched: int


def counter_value(th: _Counting, e: records.Event) -> tuple[int, int] | None:
    """(site, value) once a counter's second record comes; damage (a site past the id limit, a
    second record with no first) is counted as unmatched."""
    if not e.flags & records.COUNTER_VALUE:
        if e.id >= MAX_FUNC_ID:
            th.unmatched += 1
            th.counting = None
        else:
            th.counting = (e.id, e.aux)
        return None
    if th.counting is None:
        th.unmatched += 1
        return None
    (site, high), th.counting = th.counting, None
    value = (high & 0xFFFF) << 44 | (e.aux & 0xFFFF) << 28 | (e.id & 0xFFFFFFF)
    return site, value - (1 << 60) if value >> 59 else value


def counters(threads: list[ThreadModel]) -> list[tuple[int, int, int, int, int, float, int]]:
    """Every thread's counters added up, in the C snapshot's shape, sorted."""
    merged: dict[int, list[int]] = {}
    for th in threads:
        for site, (n, last, low, high, total, tick) in th.counters.items():
            m = merged.get(site)
            if m is None:
                merged[site] = [n, last, low, high, total, tick]
                continue
            m[0] += n
            m[2], m[3], m[4] = min(m[2], low), max(m[3], high), m[4] + total
            if tick >= m[5]:
                m[1], m[5] = last, tick
    return sorted((site, n, last, low, high, float(total) / float(n), tick)
                  for site, (n, last, low, high, total, tick) in merged.items())


_EVENT = struct.Struct("<QIBBH")
# what each event kind does to the stack: 1 enters a frame, 2 exits one, 3 restates the stack,
# 4 enters and exits one at once (a mark); a native scope enters as a C function does
_ACTION = bytes(
    1 if k in (records.CALL, records.RESUME, records.THROW, records.C_CALL, records.SCOPE_BEGIN)
    else 2 if k in (records.RETURN, records.YIELD, records.UNWIND, records.C_RETURN, records.SCOPE_END)
    else 3 if k == records.SYNC else 4 if k == records.MARK else 0
    for k in range(256))
_NATIVE_ENTRY = frozenset((records.SCOPE_BEGIN, records.MARK))


class LeaveFn(Protocol):
    def __call__(self, thread: int, t: int, fid: int, parent: int, start: int, self_ns: int) -> None: ...


class Sink(Protocol):
    def enter(self, thread: int, t: int, fid: int, parent: int, kind: int) -> None: ...

    def leave(self, thread: int, t: int, fid: int, parent: int, start: int, self_ns: int) -> None: ...

    def gap(self, thread: int, start: int, end: int) -> None: ...


def _columns(data: memoryview) -> tuple[list[int], list[int], list[int]]:
    """The records as three columns, ticks, ids and kind | flags << 8 | aux << 16,
    cut out with memoryview casts: faster than unpacking record by record."""
    if sys.byteorder != "little":  # the records are little-endian
        rows = [(t, i, k | f << 8 | a << 16) for t, i, k, f, a in _EVENT.iter_unpack(data)]
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    words = data.cast("I")
    return data.cast("Q")[0::2].tolist(), words[2::4].tolist(), words[3::4].tolist()


class FrameWalk:
    """One thread's frames as they start and end: the rules of walk.h written out in Python (the
    exporters' walker before the replay moved to C), with ticks in ns from the run's start."""

    def __init__(self, thread: int, run: Run, hidden: frozenset[int]) -> None:
        self.thread = thread
        self.t0, self.scale = run.start_ticks, run.scale
        self.hidden = hidden
        self.fids: list[int] = []
        self.starts: list[int] = []  # ns
        self.childs: list[int] = []  # ns spent in callees so far
        self.events = 0
        self.last = self.first = 0  # ticks
        self.unmatched = 0
        self.sync_want = 0
        self.sync_ids: list[int] = []
        self.sync_flags = 0
        self.sync_ticks = 0
        self.counting: tuple[int, int] | None = None  # a counter's first record (counter_value)

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
            self.last = self.first = max(_EVENT.unpack_from(data)[0], t0)
        last, first = self.last, self.first
        in_group = self.sync_want != 0  # inside a SYNC group, which only SYNC records continue
        self.events += len(data) // _EVENT.size
        for ticks, fid, code in zip(*_columns(data), strict=True):
            if ticks < last or ticks - first > MAX_SPAN_TICKS:
                ticks = last
            kind = code & 0xFF
            a = action[kind]
            if in_group and a != 3:
                self.sync_want, self.sync_ids, in_group = 0, [], False  # a broken group is dropped
            if a == 1 or a == 4:
                if fid < MAX_FUNC_ID:
                    t = (ticks - t0) * scale >> SCALE_BITS
                    parent = fids[-1] if fids else -1
                    push_fid(fid)
                    push_start(t)
                    push_child(0)
                    if fid not in hidden:
                        enter(thread, t, fid, parent, records.C_CALL if kind in _NATIVE_ENTRY else kind)
                else:
                    self.unmatched += 1
            if a == 4:  # a mark's frame ends where it began
                if fids and fids[-1] == fid:
                    self._pop((ticks - t0) * scale >> SCALE_BITS, leave)
                else:
                    self._exit_below(ticks, fid, leave)
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
            elif kind == records.COUNTER:
                counter_value(self, records.Event(ticks, fid, kind, code >> 8 & 0xFF, code >> 16))
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
                if flags & records.SYNC_RESTATE:
                    return self.sync_ticks
            return self.last
        if flags & records.SYNC_FRAME and len(self.sync_ids) < self.sync_want:
            self.sync_ids.append(fid)
            if len(self.sync_ids) == self.sync_want:
                self._apply_sync(sink)
                return self.sync_ticks
            return self.last
        return ticks

    def _apply_sync(self, sink: Sink) -> None:
        last = self.last
        if self.sync_flags & records.SYNC_RESTATE:  # nothing lost: the old stack ran until then
            last = max(last, self.sync_ticks)
        close_at = (last - self.t0) * self.scale >> SCALE_BITS
        while self.fids:
            self._pop(close_at, sink.leave)
        self.sync_ticks = max(self.sync_ticks, last)  # only a damaged stream goes back
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
