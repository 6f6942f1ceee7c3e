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

from ulma import _core
from ulma.exporters.base import Exporter
from ulma.format import runinfo, stacks

Key = tuple[str, int, str]
Figures = list[int]  # entries, recursive entries, self ns, cumulative ns


class PstatsExporter(Exporter):
    REPLAY = stacks.PSTATS  # the C replay counts by these rules (replay.c)

    def __init__(self, run: runinfo.Run, out: BinaryIO) -> None:
        super().__init__(run, out)
        self.funcs: dict[int, Figures] = {}
        self.edges: dict[tuple[int, int], Figures] = {}

    def replayed(self, replay: _core.Replay) -> None:
        funcs, edges = replay.pstats()  # in order of first entry, as cProfile's dicts
        self.funcs = {fid: [n, rec, tt, ct] for fid, n, rec, tt, ct in funcs}
        self.edges = {(caller, callee): [n, rec, tt, ct] for caller, callee, n, rec, tt, ct in edges}

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
