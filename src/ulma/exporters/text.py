"""``--format text``: every event on one tab-separated line, for grep and awk.

Columns (documented in the README)::

    time_ns  pid  tid  kind  function  file:line

``time_ns`` counts from the session's start and never goes backwards within a
thread; ``kind`` is call, return, unwind, yield, resume, throw, c_call or
c_return (C functions, with native calls; their file is ``<built-in>``),
scope_begin, scope_end or mark (native scopes and marks of ulma.h, with
their site's name and file:line) or counter (``name=value`` as function);
``cpu`` is a CPU reading, with ``cpu_ns=N`` (the thread's CPU time) or
``run_delay_ns=N`` (its run-queue wait so far) as function and ``-`` as file;
``sync`` (or
``sync_after_drop``, after lost events) starts a restatement of the thread's
stack, whose frames follow as ``frame`` lines, outermost first; ``task``
says the next event starts or ends a step of an asyncio task: its name as
function, ``#N`` (its number; ``#N new`` the first time) as file; ``obj_new``
and ``obj_free`` (``--objects``): the object's type as function, the function
that made it and its file:line as file (``-`` if it was made before tracing
began or not kept).  Events of
ulma's own bootstrap code are left out, as in the report.  Tabs separate the
columns because file names may hold spaces: ``awk -F'\\t'``.
"""

from __future__ import annotations

from typing import BinaryIO

from ulma import _core
from ulma.exporters.base import Exporter
from ulma.format import records, runinfo

_U64 = (1 << 64) - 1
HEADER = "# time_ns\tpid\ttid\tkind\tfunction\tfile:line\n"
_FUNCTION_KINDS = frozenset((records.CALL, records.RETURN, records.UNWIND, records.YIELD,
                             records.RESUME, records.THROW, records.C_CALL, records.C_RETURN,
                             records.SCOPE_BEGIN, records.SCOPE_END, records.MARK))
# records whose line depends on more than their word (never cached)
_VALUE_KINDS = frozenset((records.CPU_SAMPLE, records.COUNTER))
_OBJECT_KINDS = frozenset((records.OBJ_NEW, records.OBJ_FREE))


class TextExporter(Exporter):
    RAW = True
    SLICES = True

    def __init__(self, run: runinfo.Run, out: BinaryIO) -> None:
        super().__init__(run, out)
        out.write(HEADER.encode())
        self.where: dict[int, str] = {}  # id -> "function\tfile:line", "" for hidden functions
        self.prefix: dict[int, str] = {}  # thread -> "\tpid\ttid\t"
        # thread -> a record's second word (id | kind << 32 | flags << 40 | aux << 48) -> what
        # follows the time on its line (b"": left out); for defined ids and plain kinds only, so
        # bounded by the symbol table
        self.tails: dict[int, dict[int, bytes]] = {}
        self.last: dict[int, int] = {}  # thread -> its last tick (clamped)
        self.counting: dict[str, tuple[int, int]] = {}  # thread's prefix -> a counter's (site, high bits)

    def _where(self, fid: int) -> str:
        f = self.run.frame(fid)
        text = self.where[fid] = "" if f.hidden else f"{_clean(f.name)}\t{_clean(f.file)}:{f.line}"
        return text

    def slice(self, thread: int, data: memoryview) -> None:
        tails = self.tails.get(thread)
        if tails is None:
            tails = self.tails[thread] = {}
            self.prefix[thread] = f"\t{self.run.pid}\t{self.run.tid(thread)}\t"
        prefix, frames = self.prefix[thread], self.run.frames

        def make_tail(word: int) -> bytes:
            fid, kind, flags, aux = word & 0xFFFFFFFF, word >> 32 & 0xFF, word >> 40 & 0xFF, word >> 48
            tail = self._tail(prefix, fid, kind, flags, aux).encode()
            if ((word >> 40 == 0 and kind not in _VALUE_KINDS and fid in frames)
                    or (kind in _OBJECT_KINDS and records.TYPE_SYMBOL_BASE + aux in frames)):
                tails[word] = tail  # (an object's record: its maker and type are all its tail says)
            return tail

        scale = self.run.text_scale  # the run's --log's, if it wrote one
        text, self.last[thread] = _core.text_lines(data, self.last.get(thread), self.run.start_ticks,
                                                   scale >> 64, scale & _U64, tails, make_tail)
        self.out.write(text)

    def _tail(self, prefix: str, fid: int, kind: int, flags: int, aux: int) -> str:
        """What follows the time on a record's line: a function event, a SYNC record, a CPU
        reading, or a kind this version does not write yet; "" leaves the record out."""
        if kind == records.CPU_SAMPLE:
            what = "run_delay_ns" if flags & records.CPU_RUN_DELAY else "cpu_ns"
            return f"{prefix}cpu\t{what}={fid | aux << 32}\t-\n"
        if kind == records.COUNTER:  # two records (records.h): the line comes with the second
            if not flags & records.COUNTER_VALUE:
                self.counting[prefix] = (fid, aux)
                return ""
            site, hi = self.counting.pop(prefix, (0, 0))
            if not site:
                return ""  # its first record was not seen (a damaged stream)
            value = hi << 44 | aux << 28 | fid
            if value >> 59:
                value -= 1 << 60  # 60 bits, two's complement
            where = (self.where.get(site) or self._where(site)) if site in self.run.frames else ""
            if not where:
                return ""
            name, at = where.split("\t", 1)
            return f"{prefix}counter\t{name}={value}\t{at}\n"
        if kind in _OBJECT_KINDS:  # --objects: the type, and the function that made the object
            sym = self.run.frames.get(records.TYPE_SYMBOL_BASE + aux)
            if sym is None:
                return ""
            maker = "-"
            if not flags & records.OBJF_UNKNOWN and fid in self.run.frames:
                f = self.run.frame(fid)
                maker = f"{_clean(f.name)} {_clean(f.file)}:{f.line}"
            return f"{prefix}{records.KIND_NAMES[kind]}\t{_clean(sym.name)}\t{maker}\n"
        if kind == records.TASK:
            name = _clean(self.run.tasks.get(fid, f"task #{fid}"))
            how = "end" if flags & records.TASKF_END else "start"
            how += " new" if flags & records.TASKF_NEW else ""
            return f"{prefix}task\t{name}\t#{fid} {how}\n"
        if kind == records.SYNC and flags & records.SYNC_BEGIN:
            name = "sync_after_drop" if flags & records.SYNC_AFTER_DROP else "sync"
            return f"{prefix}{name}\t-\t-\n"
        if kind == records.SYNC and flags & records.SYNC_FRAME:
            name = "frame"
        elif kind in _FUNCTION_KINDS:
            name = records.KIND_NAMES[kind]
        else:
            name = records.KIND_NAMES.get(kind, f"kind{kind}")
            what = (self.where.get(fid) or self._where(fid)) if fid in self.run.frames else "-\t-"
            return f"{prefix}{name}\t{what}\n" if what else ""  # "": ulma's own code, left out
        w = self.where.get(fid)
        if w is None:
            w = self._where(fid)
        return f"{prefix}{name}\t{w}\n" if w else ""



def _clean(text: str) -> str:
    """Names and paths keep to one field of one line."""
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")


EXPORTER = TextExporter
