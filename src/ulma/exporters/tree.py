"""A tree of distinct call stacks with self time and calls per stack: what
the collapsed-stack and pprof exporters write.  It grows with the number of
distinct stacks, never with the number of events."""

from __future__ import annotations

from typing import BinaryIO

from ulma.exporters.base import Exporter
from ulma.format import runinfo


class StackTreeExporter(Exporter):
    """Node 0.. are stacks; a node's path to its root is the stack, root first.
    With ``PER_THREAD`` each thread has a root of its own, else all share one."""

    PER_THREAD = False

    def __init__(self, run: runinfo.Run, out: BinaryIO) -> None:
        super().__init__(run, out)
        self.parent: list[int] = [-1]
        self.fid: list[int] = [-1]
        self.self_ns: list[int] = [0]
        self.calls: list[int] = [0]
        self.thread_of_root: dict[int, int] = {0: -1}  # root node -> thread (-1: shared)
        self.children: dict[tuple[int, int], int] = {}  # (node, id) -> node
        self.at: dict[int, list[int]] = {}  # thread -> its stack of nodes

    def _node(self, parent: int, fid: int) -> int:
        node = self.children[(parent, fid)] = len(self.fid)
        self.parent.append(parent)
        self.fid.append(fid)
        self.self_ns.append(0)
        self.calls.append(0)
        return node

    def _thread_stack(self, thread: int) -> list[int]:
        root = 0
        if self.PER_THREAD:
            root = self._node(-1, -1 - thread)
            self.thread_of_root[root] = thread
        stack = self.at[thread] = [root]
        return stack

    def enter(self, thread: int, t: int, fid: int, parent: int, kind: int) -> None:
        stack = self.at.get(thread) or self._thread_stack(thread)
        top = stack[-1]
        node = self.children.get((top, fid))
        if node is None:
            node = self._node(top, fid)
        stack.append(node)
        if kind:
            self.calls[node] += 1

    def leave(self, thread: int, t: int, fid: int, parent: int, start: int, self_ns: int) -> None:
        self.self_ns[self.at[thread].pop()] += self_ns

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
