"""``--format speedscope``: speedscope's file format, one evented profile per thread.

Each frame start is an "O" event and each end a "C" event, times in ns from
the session's start, formatted by the C replay, without spaces (about 40 bytes
an event).  speedscope wants each profile's events together, but a trace
interleaves threads: the thread with the most events is written straight into
the output, and every other thread's events go packed (12 bytes each, a third
of their text) into a temporary file of its own, formatted when they are copied
in at the end.  JSON key order is free, so a profile's start and end values and
the shared frame table follow its events.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import IO, BinaryIO

from ulma import __version__, _core
from ulma.exporters.base import Exporter
from ulma.format import runinfo

SCHEMA = "https://www.speedscope.app/file-format-schema.json"
_FLUSH_BYTES = 1 << 20
_PACKED = _core.SPEEDSCOPE_PACKED_BYTES
_READ_BYTES = _PACKED << 16  # packed events read back at a time


def _copy(sink: IO[bytes], out: BinaryIO) -> None:
    """A thread's packed events, from sink, at the end of out as text (the first without the
    comma before it)."""
    sink.flush()
    fd, at, skip = sink.fileno(), 0, 2
    piece, text = bytearray(_READ_BYTES), bytearray()  # reused: no fresh memory per piece
    with memoryview(piece) as read:
        while size := os.preadv(fd, [read], at):
            while size % _PACKED and (more := os.preadv(fd, [read[size:]], at + size)):  # a short read
                size += more
            at += size
            length = _core.speedscope_text(read[:size], text)
            with memoryview(text) as view:
                out.write(view[skip:length])
            skip = 0


class SpeedscopeExporter(Exporter):
    def __init__(self, run: runinfo.Run, out: BinaryIO) -> None:
        super().__init__(run, out)
        self.frame_index: dict[int, int] = {}  # id -> index, in order of first entry
        self.sinks: dict[int, IO[bytes]] = {}  # thread -> where its events go
        self.first: dict[int, int] = {}  # thread -> time of its first event
        self.last: dict[int, int] = {}  # thread -> time of its last event (always a close)
        self.written: set[int] = set()  # threads with events in their sink already
        self.direct = max(run.events, key=lambda slot: run.events[slot], default=-1)
        title = json.dumps(f"ulma {run.path}")
        out.write(f'{{"$schema":"{SCHEMA}","exporter":"ulma {__version__}","name":{title},'
                  '"activeProfileIndex":0,\n"profiles":[\n'.encode())

    def _start(self, thread: int, t: int) -> None:
        if thread == self.direct:
            self.out.write(self._head(thread))
            self.sinks[thread] = self.out
        else:
            self.sinks[thread] = tempfile.TemporaryFile()  # noqa: SIM115 -- closed in finish()
        self.first[thread] = t

    def _head(self, thread: int) -> bytes:
        name = json.dumps(self.run.thread_name(thread))
        return f'{{"type":"evented","name":{name},"unit":"nanoseconds","events":[\n'.encode()

    def _write(self, thread: int, data: memoryview, first: int, last: int) -> None:
        """A thread's events, held in C until there were _FLUSH_BYTES of them, into its sink:
        text for the direct thread, packed for the others."""
        if thread not in self.sinks:
            self._start(thread, first)
        if last >= 0:
            self.last[thread] = last
        if thread in self.written or thread != self.direct:
            self.sinks[thread].write(data)
        else:  # the profile's first event: no comma before it
            self.sinks[thread].write(data[2:])
            self.written.add(thread)

    def take_frames(self, replay: _core.Replay) -> None:
        """Each frame's start ("O") and end ("C"), formatted (or packed) in C, per thread."""
        replay.take_speedscope(self.frame_index, _FLUSH_BYTES, self._write, self.direct)

    def replayed(self, replay: _core.Replay) -> None:
        """What the replay still holds, every thread's."""
        replay.take_speedscope(self.frame_index, 0, self._write, self.direct)

    def finish(self) -> None:
        out = self.out
        threads = sorted(self.sinks, key=lambda slot: slot != self.direct)  # the direct one first
        for index, thread in enumerate(threads):
            sink = self.sinks[thread]
            if sink is not out:
                out.write((",\n" if index else "").encode() + self._head(thread))
                _copy(sink, out)
                sink.close()
            out.write(f'\n],"startValue":{self.first[thread]},"endValue":{self.last[thread]}}}'.encode())
        frames = []
        for fid in self.frame_index:  # in index order
            f = self.run.frame(fid)
            frames.append(json.dumps({"name": f.name, "file": f.file, "line": f.line}, separators=(",", ":")))
        out.write(("\n],\n\"shared\":{\"frames\":[\n" + ",\n".join(frames) + "\n]}}\n").encode())


EXPORTER = SpeedscopeExporter
