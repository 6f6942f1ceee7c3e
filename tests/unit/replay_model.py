"""A pure-Python model of the C replay (``_core/aggregate.c``): the rules
written out slowly, so the fast code can be checked against them."""

from __future__ import annotations

from dataclasses import dataclass, field

from ulma.format import records

MAX_FUNC_ID = 1 << 24
ENTER = {records.CALL, records.RESUME, records.THROW}
EXIT = {records.RETURN, records.YIELD, records.UNWIND}


@dataclass
class Frame:
    id: int
    start: int
    child: int = 0
    edge: tuple[int, int] | None = None


@dataclass
class Totals:
    calls: int = 0
    resumes: int = 0
    self: int = 0
    total: int = 0


@dataclass
class EdgeTotals:
    calls: int = 0
    resumes: int = 0
    total: int = 0
    active: int = 0


@dataclass
class ThreadModel:
    funcs: dict[int, Totals] = field(default_factory=dict)
    active: dict[int, int] = field(default_factory=dict)
    edges: dict[tuple[int, int], EdgeTotals] = field(default_factory=dict)
    stack: list[Frame] = field(default_factory=list)
    events: int = 0
    last: int = 0
    lost: int = 0
    unmatched: int = 0
    sync_want: int = 0
    sync_ids: list[int] = field(default_factory=list)
    sync_flags: int = 0
    sync_ticks: int = 0

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
                self.last = t
            t = max(t, self.last)
            self.events += 1
            if self.sync_want and not (e.kind == records.SYNC and e.flags & records.SYNC_FRAME):
                self.sync_want, self.sync_ids = 0, []  # a group is contiguous, or dropped
            if e.kind in ENTER:
                self.push(e.id, t, e.kind)
            elif e.kind in EXIT:
                self.exit(e.id, t)
            elif e.kind == records.SYNC:
                if e.flags & records.SYNC_BEGIN:
                    self.sync_want, self.sync_ids = e.aux, []
                    self.sync_flags, self.sync_ticks = e.flags, t
                    if e.aux == 0:
                        self.apply_sync()
                    t = self.last
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


def snapshot(threads: list[ThreadModel], now: int = 0) -> tuple[
        list[tuple[int, int, int, int, int]], list[tuple[int, int, int, int, int]]]:
    """Merged totals in the C snapshot's shape; with `now`, open frames count to now."""
    funcs: dict[int, Totals] = {}
    edges: dict[tuple[int, int], EdgeTotals] = {}
    for th in threads:
        for fid, f in th.funcs.items():
            m = funcs.setdefault(fid, Totals())
            m.calls += f.calls
            m.resumes += f.resumes
            m.self += f.self
            m.total += f.total
        for key, e in th.edges.items():
            me = edges.setdefault(key, EdgeTotals())
            me.calls += e.calls
            me.resumes += e.resumes
            me.total += e.total
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
    f_out = sorted((fid, f.calls, f.resumes, f.self, f.total) for fid, f in funcs.items()
                   if f.calls or f.resumes or f.self or f.total)
    e_out = sorted((c, d, e.calls, e.resumes, e.total) for (c, d), e in edges.items()
                   if e.calls or e.resumes or e.total)
    return f_out, e_out
