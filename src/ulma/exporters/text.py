"""``--format text``: every event on one tab-separated line, for grep and awk.

Columns (documented in the README)::

    time_ns  pid  tid  kind  function  file:line

``time_ns`` counts from the session's start and never goes backwards within a
thread; ``kind`` is call, return, unwind, yield, resume, throw, c_call or
c_return (C functions, with native calls; their file is ``<built-in>``);
``cpu`` is a CPU reading, with ``cpu_ns=N`` (the thread's CPU time) or
``run_delay_ns=N`` (its run-queue wait so far) as function and ``-`` as file;
``sync`` (or
``sync_after_drop``, after lost events) starts a restatement of the thread's
stack, whose frames follow as ``frame`` lines, outermost first.  Events of
ulma's own bootstrap code are left out, as in the report.  Tabs separate the
columns because file names may hold spaces: ``awk -F'\\t'``.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from ulma.exporters.base import Exporter
from ulma.format import records, runinfo

HEADER = "# time_ns\tpid\ttid\tkind\tfunction\tfile:line\n"
_FUNCTION_KINDS = frozenset((records.CALL, records.RETURN, records.UNWIND, records.YIELD,
                             records.RESUME, records.THROW, records.C_CALL, records.C_RETURN))


class TextExporter(Exporter):
    RAW = True

    def __init__(self, run: runinfo.Run, out: BinaryIO) -> None:
        super().__init__(run, out)
        self.text = io.TextIOWrapper(out, encoding="utf-8", newline="\n", write_through=True)
        self.text.write(HEADER)
        # plain function events (no flags, no aux): their code is their kind
        self.plain = {k: records.KIND_NAMES[k] for k in _FUNCTION_KINDS}
        self.where: dict[int, str] = {}  # id -> "function\tfile:line", "" for hidden functions
        self.prefix: dict[int, str] = {}  # thread -> "\tpid\ttid\t"

    def _where(self, fid: int) -> str:
        f = self.run.frame(fid)
        text = self.where[fid] = "" if f.hidden else f"{_clean(f.name)}\t{_clean(f.file)}:{f.line}"
        return text

    def records(self, thread: int, times: list[int], ids: list[int], codes: list[int]) -> None:
        prefix = self.prefix.get(thread)
        if prefix is None:
            prefix = self.prefix[thread] = f"\t{self.run.pid}\t{self.run.tid(thread)}\t"
        plain, where = self.plain, self.where
        lines = []
        for t, fid, code in zip(times, ids, codes, strict=True):
            name = plain.get(code)
            if name is not None:
                w = where.get(fid)
                if w is None:
                    w = self._where(fid)
                if w:
                    lines.append(f"{t}{prefix}{name}\t{w}\n")
            else:
                line = self._other(t, prefix, fid, code & 0xFF, code >> 8 & 0xFF, code >> 16)
                if line:
                    lines.append(line)
        self.text.write("".join(lines))

    def _other(self, t: int, prefix: str, fid: int, kind: int, flags: int, aux: int) -> str:
        """A SYNC record, a CPU reading, a function event with flags, or a kind this version
        does not write yet."""
        if kind == records.CPU_SAMPLE:
            what = "run_delay_ns" if flags & records.CPU_RUN_DELAY else "cpu_ns"
            return f"{t}{prefix}cpu\t{what}={fid | aux << 32}\t-\n"
        if kind == records.SYNC and flags & records.SYNC_BEGIN:
            name = "sync_after_drop" if flags & records.SYNC_AFTER_DROP else "sync"
            return f"{t}{prefix}{name}\t-\t-\n"
        if kind == records.SYNC and flags & records.SYNC_FRAME:
            name = "frame"
        elif kind in _FUNCTION_KINDS:
            name = records.KIND_NAMES[kind]
        else:
            name = records.KIND_NAMES.get(kind, f"kind{kind}")
            what = (self.where.get(fid) or self._where(fid)) if fid in self.run.frames else "-\t-"
            return f"{t}{prefix}{name}\t{what}\n" if what else ""  # "": ulma's own code, left out
        w = self.where.get(fid)
        if w is None:
            w = self._where(fid)
        return f"{t}{prefix}{name}\t{w}\n" if w else ""

    def finish(self) -> None:
        self.text.flush()
        self.text.detach()  # the caller closes the file


def _clean(text: str) -> str:
    """Names and paths keep to one field of one line."""
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")


EXPORTER = TextExporter
