"""``--format pstats``: a file ``pstats.Stats(path)`` loads, for snakeviz,
gprof2dot, tuna and friends, with the figures cProfile would have written.

cProfile's rules, applied to ulma's frames (per thread, as the aggregator does):

- ``ncalls``: entries of the function -- calls plus generator and coroutine
  resumptions, as cProfile counts them;
- primitive calls: entries while no other activation of the function was on
  the thread's stack (``ncalls`` shows ``total/primitive`` when they differ);
- ``tottime``: self time; ``cumtime``: time from entry to exit, counted for
  the outermost activation only, so recursion is not counted twice;
- callers: the same four figures per (caller, callee) pair, the recursion
  level kept per pair, as ``_lsprof`` does.

Times are in seconds.  Functions are keyed ``(file, first line, qualified
name)``; ulma's own bootstrap functions and the edges touching them are left
out, as in the report.  The file is ``marshal``-ed like ``Profile.dump_stats``.
"""

from __future__ import annotations

import marshal
from typing import BinaryIO

from ulma.exporters.base import Exporter
from ulma.format import runinfo

Key = tuple[str, int, str]
Figures = list[int]  # entries, recursive entries, self ns, cumulative ns


class PstatsExporter(Exporter):
    def __init__(self, run: runinfo.Run, out: BinaryIO) -> None:
        super().__init__(run, out)
        self.hidden = run.hidden
        self.funcs: dict[int, Figures] = {}
        self.edges: dict[tuple[int, int], Figures] = {}
        self.active: dict[int, dict[int, int]] = {}  # thread -> id -> open activations
        self.edge_active: dict[int, dict[tuple[int, int], int]] = {}

    def enter(self, thread: int, t: int, fid: int, parent: int, kind: int) -> None:
        active = self.active.get(thread)
        if active is None:
            active = self.active[thread] = {}
            self.edge_active[thread] = {}
        level = active.get(fid, 0)
        active[fid] = level + 1
        f = self.funcs.get(fid)
        if f is None:
            f = self.funcs[fid] = [0, 0, 0, 0]
        if kind:
            f[0] += 1
            if level:
                f[1] += 1
        if parent >= 0 and parent not in self.hidden:
            edge = (parent, fid)
            levels = self.edge_active[thread]
            level = levels.get(edge, 0)
            levels[edge] = level + 1
            e = self.edges.get(edge)
            if e is None:
                e = self.edges[edge] = [0, 0, 0, 0]
            if kind:
                e[0] += 1
                if level:
                    e[1] += 1

    def leave(self, thread: int, t: int, fid: int, parent: int, start: int, self_ns: int) -> None:
        el = t - start
        active = self.active[thread]
        active[fid] -= 1
        f = self.funcs[fid]
        f[2] += self_ns
        if not active[fid]:
            f[3] += el
        if parent >= 0 and parent not in self.hidden:
            edge = (parent, fid)
            levels = self.edge_active[thread]
            levels[edge] -= 1
            e = self.edges[edge]
            e[2] += self_ns
            if not levels[edge]:
                e[3] += el

    def key(self, fid: int) -> Key:
        f = self.run.frame(fid)
        return (f.file, f.line, f.name)

    def finish(self) -> None:
        stats: dict[Key, tuple[int, int, float, float, dict[Key, tuple[int, int, float, float]]]] = {}
        callers: dict[Key, dict[Key, tuple[int, int, float, float]]] = {}
        for fid, (nc, rec, tt, ct) in self.funcs.items():
            key = self.key(fid)
            cc, nc0, tt0, ct0, calls = stats.get(key, (0, 0, 0.0, 0.0, {}))
            stats[key] = (cc + nc - rec, nc0 + nc, tt0 + tt / 1e9, ct0 + ct / 1e9, calls)
            callers[key] = calls
        for (caller, callee), (nc, rec, tt, ct) in self.edges.items():
            calls = callers[self.key(callee)]
            ckey = self.key(caller)
            nc0, cc0, tt0, ct0 = calls.get(ckey, (0, 0, 0.0, 0.0))
            # a caller's figures are (ncalls, primitive calls, tottime, cumtime): cProfile's order
            calls[ckey] = (nc0 + nc, cc0 + nc - rec, tt0 + tt / 1e9, ct0 + ct / 1e9)
        marshal.dump(stats, self.out)


EXPORTER = PstatsExporter
