"""``--format html``: one self-contained page (the live browser view's page, its
d3, style, script and data inlined: it opens offline) with the function table,
an icicle of every distinct call stack and a timeline of each thread.

The icicle is exact: the C replay's tree of distinct stacks (what the collapsed
and pprof exports write), each frame's inclusive time split four ways -- its own
time split as its function's own time is (CPU, overhead, waiting), plus its
callees' splits.  The table is ``ulma report``'s profile of the same file.  The
timeline keeps, per thread, the frames at most MAX_DEPTH deep that lasted long
enough to see: at most MAX_SPANS of them, the shortest left out first, so memory
stays bounded whatever the trace's length.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO

from ulma import _core
from ulma.exporters.base import Exporter
from ulma.format import runinfo, stacks, trace
from ulma.monitor.offline import load_profile
from ulma.monitor.profile import FunctionStats, Profile
from ulma.web import model, page

MAX_DEPTH = 6  # timeline rows per thread
MAX_SPANS = 8_000  # timeline frames in the file, all threads
MAX_TREE_DEPTH = 128  # icicle levels: deeper frames are in their ancestors' time, not drawn
MAX_TREE_NODES = 5000  # with more distinct stacks than this ...
MIN_TREE_SHARE = 0.0002  # ... frames under this share of the whole are left in their caller's
TIMELINE_NOTE = (f"each thread's frames up to {MAX_DEPTH} deep, long enough to show (at most "
                 f"{MAX_SPANS:,}), coloured by their function's main part")
TREE_NOTE = (f"exact: every distinct call stack of the trace (all threads together), {MAX_TREE_DEPTH} "
             "frames deep at most")


class HtmlExporter(Exporter):
    REPLAY = stacks.TREE | stacks.FRAMES

    def __init__(self, run: runinfo.Run, out: BinaryIO) -> None:
        super().__init__(run, out)
        self.depth: dict[int, int] = {}
        self.spans: list[tuple[int, int, int, int, int]] = []  # (thread, start, end, fid, depth)
        self.min_ns = 1
        self.nodes: list[tuple[int, int, int, int, int, int]] = []

    def enter(self, thread: int, t: int, fid: int, parent: int, kind: int) -> None:
        self.depth[thread] = self.depth.get(thread, 0) + 1

    def leave(self, thread: int, t: int, fid: int, parent: int, start: int, self_ns: int) -> None:
        depth = max(self.depth.get(thread, 0) - 1, 0)
        self.depth[thread] = depth
        if depth < MAX_DEPTH and t - start >= self.min_ns:
            self.spans.append((thread, start, t, fid, depth))
            if len(self.spans) > MAX_SPANS:
                self._thin()

    def _thin(self) -> None:
        """Leaves out the shorter half: the threshold rises until MAX_SPANS fit."""
        lengths = sorted(end - start for _, start, end, _, _ in self.spans)
        self.min_ns = max(lengths[len(lengths) // 2] + 1, self.min_ns * 2)
        self.spans = [s for s in self.spans if s[2] - s[1] >= self.min_ns]

    def replayed(self, replay: _core.Replay) -> None:
        self.nodes = replay.tree()

    def finish(self) -> None:
        reader = trace.TraceReader(self.run.path)
        profile = load_profile(reader)
        for warning in reader.warnings:
            if warning not in self.run.warnings:
                self.run.warnings.append(warning)
        self.out.write(page.render(self.page_data(profile)).encode("utf-8"))

    def page_data(self, profile: Profile) -> model.Json:
        by_fid = {f.fid: f for f in profile.functions if f.fid}
        return {
            "type": "snapshot", "live": False, "title": os.path.basename(self.run.path),
            "ended": True, "returncode": None, "cleared": False, "wall_ns": profile.wall_ns,
            "split_known": profile.split_known, "parts": model.parts(profile.split_known),
            "functions": model.rows(profile, None, 0.0), "flame": self.tree(by_fid, profile.split_known),
            "flame_note": TREE_NOTE, "timeline": self.timeline(by_fid, profile.split_known), "health": None,
        }

    def tree(self, by_fid: dict[int, FunctionStats], known: bool) -> model.Json:
        """The replay's stacks as nested frames, each with its inclusive time and split."""
        width = len(model.parts(known))
        value = [0] * len(self.nodes)
        split = [[0.0] * width for _ in self.nodes]
        for node in range(len(self.nodes) - 1, -1, -1):  # a child comes after its parent
            parent, fid, self_ns, _calls, _objects, _bytes = self.nodes[node]
            value[node] += self_ns
            f = by_fid.get(fid)
            if f is not None and self_ns:
                own = model.self_split_of(f, known)
                whole = sum(own)
                for i, part in enumerate(own):  # the frame's own time split as its function's is
                    split[node][i] += self_ns * part / whole if whole else 0.0
                if not whole:
                    split[node][0] += self_ns
            elif self_ns:
                split[node][0] += self_ns
            if parent >= 0:
                value[parent] += value[node]
                split[parent] = [a + b for a, b in zip(split[parent], split[node], strict=True)]
        floor = max(value[0] if value else 0, 1) * MIN_TREE_SHARE if len(self.nodes) > MAX_TREE_NODES else 0
        frames: list[model.Json] = []
        depth = [0] * len(self.nodes)
        for node, (parent, fid, _self, _calls, _objects, _bytes) in enumerate(self.nodes):
            if node == 0:
                frames.append(model.frame("all", "", 0, 0, value[0], split[0]))
                continue
            sym = self.run.frame(fid)
            frames.append(model.frame(sym.name, sym.file, sym.line, fid, value[node], split[node]))
            depth[node] = depth[parent] + 1 if parent >= 0 else 0
            # (nested frames: a tree as deep as the program's recursion would overflow the JSON
            # encoder's stack and the page's)
            shown = value[node] >= floor and depth[node] <= MAX_TREE_DEPTH
            if parent >= 0 and shown and _kept(frames[parent]):
                frames[parent]["children"].append(frames[node])
            else:
                frames[node]["dropped"] = True
        for kept in frames:
            kept.pop("dropped", None)
        return frames[0] if frames else model.frame("all", "", 0, 0, 0, [0.0] * width)

    def timeline(self, by_fid: dict[int, FunctionStats], known: bool) -> model.Json:
        names = [p["name"] for p in model.parts(known)]
        index: dict[int, int] = {}
        functions: list[dict[str, Any]] = []
        lanes: dict[int, list[list[int]]] = {}
        for thread, start, end, fid, depth in sorted(self.spans, key=lambda s: (s[0], s[1], s[4])):
            if fid not in index:
                index[fid] = len(functions)
                f = by_fid.get(fid)
                shares = model.split_of(f, known) if f is not None else [1]
                main = max(range(len(shares)), key=lambda i: shares[i])
                functions.append({"name": self.run.frame(fid).name, "part": names[main]})
            lanes.setdefault(thread, []).append([start, end, index[fid], depth])
        starts = [s[1] for s in self.spans]
        ends = [s[2] for s in self.spans]
        return {
            "kind": "spans", "note": TIMELINE_NOTE, "start": min(starts, default=0),
            "end": max(ends, default=1), "functions": functions,
            "threads": [{"name": self.run.thread_name(thread), "depth": 1 + max(s[3] for s in spans),
                         "spans": spans} for thread, spans in sorted(lanes.items())],
        }


def _kept(frame: model.Json) -> bool:
    return not frame.get("dropped", False)


EXPORTER = HtmlExporter
