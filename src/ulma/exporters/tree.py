"""A tree of distinct call stacks with self time and calls per stack: what
the collapsed-stack and pprof exporters write, built by the C replay.  It
grows with the number of distinct stacks, never with the number of events."""

from __future__ import annotations

from typing import BinaryIO

from ulma import _core
from ulma.exporters.base import Exporter
from ulma.format import runinfo, stacks


class StackTreeExporter(Exporter):
    """Node 0.. are stacks; a node's path to its root is the stack, root first.
    The C replay builds the tree; this keeps its nodes.  With
    ``stacks.TREE_PER_THREAD`` in REPLAY each thread has a root of its own
    (its fid -1 - thread), else all share node 0."""

    REPLAY = stacks.TREE

    def __init__(self, run: runinfo.Run, out: BinaryIO) -> None:
        super().__init__(run, out)
        self.parent: list[int] = [-1]
        self.fid: list[int] = [-1]
        self.self_ns: list[int] = [0]
        self.calls: list[int] = [0]
        self.objects: list[int] = [0]  # objects made with the stack on top (--objects)
        self.bytes: list[int] = [0]  # their bytes, where the allocator told sizes
        self.thread_of_root: dict[int, int] = {0: -1}  # root node -> thread (-1: shared)

    def replayed(self, replay: _core.Replay) -> None:
        nodes = replay.tree()
        cut = replay.cut_frames()
        if cut:
            self.run.warnings.append(f"{cut} frames deeper than {replay.tree_max_depth()} were cut: "
                                     "their time is the deepest kept frame's")
        self.parent = [n[0] for n in nodes]
        self.fid = [n[1] for n in nodes]
        self.self_ns = [n[2] for n in nodes]
        self.calls = [n[3] for n in nodes]
        self.objects = [n[4] for n in nodes]
        self.bytes = [n[5] for n in nodes]
        self.thread_of_root = {0: -1}
        for node, (parent, fid, _ns, _calls, _objects, _bytes) in enumerate(nodes):
            if parent < 0 and node:
                self.thread_of_root[node] = -1 - fid

    def path(self, node: int) -> list[int]:
        """The ids on the stack of `node`, outermost first (the root left out)."""
        out = []
        while self.parent[node] >= 0:
            out.append(self.fid[node])
            node = self.parent[node]
        out.reverse()
        return out

    def root(self, node: int) -> int:
        while self.parent[node] >= 0:
            node = self.parent[node]
        return node
