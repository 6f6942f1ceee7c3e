"""``--format chrome``: the Trace Event Format read by ui.perfetto.dev,
chrome://tracing and speedscope, whatever the file is named.

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

The file is the format's JSON array form, and ends with one CPU profile per
thread (a ``Profile`` and a ``ProfileChunk`` event, as Chrome's own traces
carry): speedscope reads any file named ``*.chrome.json`` as a Chrome timeline
and takes only those (it failed on the object form), and reads an array with
them the same way under any other name.  That profile is the thread's tree of
distinct stacks, each with its exact self time -- speedscope's left-heavy and
sandwich views are then exact; its time order is the tree's, not the
program's (the slices are the time line, for Perfetto).  Its events have the
category ``ulma.stacks``.
"""

from __future__ import annotations

import io
import json
from typing import BinaryIO

from ulma import __version__, _core
from ulma.exporters.tree import StackTreeExporter
from ulma.format import runinfo, stacks

_COMPACT = (",", ":")  # json.dumps separators: no spaces


def us(ns: int) -> str:
    """ns as a decimal number of microseconds, exact (no float rounding)."""
    if ns < 0:
        return "-" + us(-ns)
    return f"{ns // 1000}.{ns % 1000:03d}"


class ChromeExporter(StackTreeExporter):
    # an event is written whole, as its frame ends; a counter's value as it is set; and the tree of
    # each thread's stacks for the CPU profiles at the end
    REPLAY = stacks.FRAMES | stacks.ENDS_ONLY | stacks.COUNTERS | stacks.TREE | stacks.TREE_PER_THREAD

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
        # (speedscope takes an array for a Chrome timeline if its first event has a "cat")
        head = [{"ph": "M", "name": "process_name", "pid": run.pid, "tid": 0, "cat": "__metadata",
                 "args": {"name": f"python {meta.get('python', '')} (pid {run.pid})"}},
                {"ph": "M", "name": "ulma", "pid": run.pid, "tid": 0, "cat": "__metadata", "args": other}]
        for index, slot in enumerate(sorted(run.events)):
            tid = run.tid(slot)
            head.append({"ph": "M", "name": "thread_name", "pid": run.pid, "tid": tid,
                         "args": {"name": run.thread_name(slot)}})
            head.append({"ph": "M", "name": "thread_sort_index", "pid": run.pid, "tid": tid,
                         "args": {"sort_index": index}})
        self.text.write("[\n" + ",\n".join(json.dumps(e, separators=_COMPACT) for e in head))

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

    def write_profiles(self) -> None:
        """Each thread's tree of stacks as a V8 CPU profile: one node per distinct stack (Chrome's
        ``lineNumber`` counts from 0), one sample per stack with self time, that time the next
        sample's delta (speedscope weighs a sample by the delta after it), microseconds.  ulma's
        own hidden frames are left out as from the slices: their time is their caller's."""
        hidden = self.run.hidden
        children: dict[int, list[int]] = {}
        for node in range(1, len(self.parent)):
            if self.parent[node] >= 0:
                children.setdefault(self.parent[node], []).append(node)
        for number, (root, thread) in enumerate(sorted(self.thread_of_root.items()), 1):
            if thread < 0 or root not in children:
                continue
            nodes: list[dict[str, object]] = [
                {"id": root, "callFrame": {"functionName": "(root)", "url": "", "lineNumber": -1,
                                           "columnNumber": -1, "scriptId": "0"}}]
            shown = {root: root}  # node -> the node it is shown as (a hidden one: its caller's)
            own: dict[int, int] = {}  # shown node -> self ns, in depth-first order
            order = list(reversed(children[root]))
            while order:  # depth first, callees in the order first called
                node = order.pop()
                above = shown[self.parent[node]]
                if self.fid[node] in hidden:
                    shown[node] = above
                else:
                    shown[node] = node
                    f = self.run.frame(self.fid[node])
                    frame = {"functionName": f.name, "url": f.file, "lineNumber": f.line - 1,
                             "columnNumber": 0, "scriptId": "0"}
                    nodes.append({"id": node, "parent": above, "callFrame": frame})
                    own.setdefault(node, 0)
                if shown[node] != root:  # (time under no frame of the program's: no slice either)
                    own[shown[node]] = own.get(shown[node], 0) + self.self_ns[node]
                order.extend(reversed(children.get(node, ())))
            samples = [node for node, ns in own.items() if ns]
            deltas = ["0", *(us(own[node]) for node in samples)]
            samples.append(root)  # the last sample's delta closes the one before it
            where = {"pid": self.run.pid, "tid": self.run.tid(thread), "ts": 0, "cat": "ulma.stacks",
                     "id": f"0x{number:x}"}
            profile = {"ph": "P", "name": "Profile", **where, "args": {"data": {"startTime": 0}}}
            chunk = {"ph": "P", "name": "ProfileChunk", **where,
                     "args": {"data": {"cpuProfile": {"nodes": nodes, "samples": samples},
                                       "timeDeltas": [], "endTime": 0}}}
            text = json.dumps(chunk, separators=_COMPACT)
            # the deltas are exact decimals (us()), not floats: put in as they are
            text = text.replace('"timeDeltas":[]', '"timeDeltas":[' + ",".join(deltas) + "]")
            text = text.replace('"endTime":0', f'"endTime":{us(sum(own.values()))}')
            self.text.write(",\n" + json.dumps(profile, separators=_COMPACT) + ",\n" + text)

    def take_frames(self, replay: _core.Replay) -> None:
        """The frames that ended, formatted in C (one line each, as ``_prefix`` and ``us`` say) and
        written straight from its buffer."""
        replay.take_chrome(self.prefix, self._prefix, self._gap, self.out.write)

    def finish(self) -> None:
        self.write_profiles()
        self.text.write("\n]\n")
        self.text.flush()
        self.text.detach()


EXPORTER = ChromeExporter
