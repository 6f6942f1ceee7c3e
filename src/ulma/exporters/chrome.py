"""``--format chrome``: the Trace Event Format read by ui.perfetto.dev,
chrome://tracing and speedscope.

One complete ("X") event per activation of a function -- a generator's run
from a resume to its next yield is one -- on one track per thread, named by
process_name/thread_name metadata events.  Time lost to dropped events is an
``ulma: events lost`` slice.  A native counter (ulma.h's ``ULMA_COUNTER``) is a
counter ("C") event per value set, ``args.value``: a track of its own per
process, named after the counter.  Timestamps are microseconds written with exactly
three decimals (whole ns), so slices nest exactly as they did in the program.
Events are written as frames end, formatted by the C replay, one a line and
without spaces (JSON's compact form: the bytes per event are what the kernel
copies): memory holds nothing per event.
"""

from __future__ import annotations

import io
import json
from typing import BinaryIO

from ulma import __version__, _core
from ulma.exporters.base import Exporter
from ulma.format import runinfo, stacks

_COMPACT = (",", ":")  # json.dumps separators: no spaces


def us(ns: int) -> str:
    """ns as a decimal number of microseconds, exact (no float rounding)."""
    if ns < 0:
        return "-" + us(-ns)
    return f"{ns // 1000}.{ns % 1000:03d}"


class ChromeExporter(Exporter):
    # an event is written whole, as its frame ends; a counter's value as it is set
    REPLAY = stacks.FRAMES | stacks.ENDS_ONLY | stacks.COUNTERS

    def __init__(self, run: runinfo.Run, out: BinaryIO) -> None:
        super().__init__(run, out)
        self.text = io.TextIOWrapper(out, encoding="utf-8", newline="\n", write_through=True)
        self.prefix: dict[int, bytes] = {}  # thread << 32 | id -> the event up to "ts"
        meta = run.meta
        # A damaged META may hold anything: only strings and integers pass (a NaN would make the
        # whole file unreadable to JSON.parse).
        about = {key: meta.get(key) for key in ("python", "engine", "clock", "host", "start_real_ns")}
        other = {"ulma": __version__, **{key: value if isinstance(value, str | int) else None
                                         for key, value in about.items()}, "trace": run.path}
        head = [{"ph": "M", "name": "process_name", "pid": run.pid, "tid": 0,
                 "args": {"name": f"python {meta.get('python', '')} (pid {run.pid})"}}]
        for index, slot in enumerate(sorted(run.events)):
            tid = run.tid(slot)
            head.append({"ph": "M", "name": "thread_name", "pid": run.pid, "tid": tid,
                         "args": {"name": run.thread_name(slot)}})
            head.append({"ph": "M", "name": "thread_sort_index", "pid": run.pid, "tid": tid,
                         "args": {"sort_index": index}})
        self.text.write('{"displayTimeUnit":"ns","otherData":' + json.dumps(other, separators=_COMPACT)
                        + ',\n"traceEvents":[\n'
                        + ",\n".join(json.dumps(e, separators=_COMPACT) for e in head))

    def _prefix(self, thread: int, fid: int, counter: int) -> bytes:
        f = self.run.frame(fid)
        if counter:  # (the value follows the time: take_chrome)
            head = {"ph": "C", "pid": self.run.pid, "tid": self.run.tid(thread), "name": f.name,
                    "cat": "ulma.counter"}
            return (",\n" + json.dumps(head, separators=_COMPACT)[:-1] + ',"ts":').encode()
        head = {"ph": "X", "pid": self.run.pid, "tid": self.run.tid(thread), "name": f.name,
                "cat": "python", "args": {"file": f.file, "line": f.line}}
        return (",\n" + json.dumps(head, separators=_COMPACT)[:-1] + ',"ts":').encode()

    def _gap(self, thread: int, start: int, end: int) -> str:
        head = {"ph": "X", "pid": self.run.pid, "tid": self.run.tid(thread), "name": "ulma: events lost",
                "cat": "ulma", "args": {"why": "a full ring dropped events; the stack was restated after"}}
        times = f',"ts":{us(start)},"dur":{us(end - start)}}}'
        return ",\n" + json.dumps(head, separators=_COMPACT)[:-1] + times

    def take_frames(self, replay: _core.Replay) -> None:
        """The frames that ended, formatted in C (one line each, as ``_prefix`` and ``us`` say) and
        written straight from its buffer."""
        replay.take_chrome(self.prefix, self._prefix, self._gap, self.out.write)

    def finish(self) -> None:
        self.text.write("\n]}\n")
        self.text.flush()
        self.text.detach()


EXPORTER = ChromeExporter
