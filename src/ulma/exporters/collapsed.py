"""``--format collapsed``: folded stacks for flamegraph.pl, inferno, speedscope
and friends: one line per distinct stack, ``outer;...;inner NS``, where NS is
the ns spent in the innermost function itself on that stack (all threads
added up).  A stack's lines below it add up to its inclusive time, and the
lines under a root function add up to that root's total in the report.

Frames are written ``function (file:line)``; the file keeps its full path, so
same-named functions of different files stay apart.
"""

from __future__ import annotations

import io

from ulma.exporters.tree import StackTreeExporter


def label(name: str, file: str, line: int) -> str:
    """A frame's text: no ';' (the separator) and no line break."""
    text = f"{name} ({file}:{line})"
    return text.replace(";", ",").replace("\n", " ").replace("\r", " ")


class CollapsedExporter(StackTreeExporter):
    def finish(self) -> None:
        text = io.TextIOWrapper(self.out, encoding="utf-8", newline="\n")
        labels: dict[int, str] = {}
        for fid in set(self.fid[1:]):
            f = self.run.frame(fid)
            labels[fid] = label(f.name, f.file, f.line)
        lines = []
        for node in range(1, len(self.fid)):
            ns = self.self_ns[node]
            if ns > 0:
                lines.append(";".join(labels[fid] for fid in self.path(node)) + f" {ns}\n")
                if len(lines) >= 1024:
                    text.write("".join(lines))
                    lines.clear()
        text.write("".join(lines))
        text.flush()
        text.detach()


EXPORTER = CollapsedExporter
