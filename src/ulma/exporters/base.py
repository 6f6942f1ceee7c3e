"""The one interface every trace exporter has, and the driver that runs one.

An exporter is made with the run's description and a binary output file;
it is fed either the raw records (``records``; ``RAW = True``) or what the C
replay (``ulma.format.stacks``) makes of them -- ``REPLAY`` says what: each
thread's frames as they start and end (``enter``/``leave``/``gap``), or the
tree of distinct stacks, or cProfile's figures, handed over in ``replayed``
-- and ``finish`` completes the file.  Whatever it keeps between events must
stay bounded by stacks, functions or threads, never by the number of events,
so a trace of any length converts.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from typing import BinaryIO, ClassVar

from ulma import _core
from ulma.format import files, runinfo, stacks, trace

# format name -> module under ulma.exporters whose EXPORTER class writes it
FORMATS: dict[str, str] = {
    "text": "text",
    "chrome": "chrome",
    "speedscope": "speedscope",
    "pprof": "pprof",
    "collapsed": "collapsed",
    "pstats": "pstats",
    "html": "html",
}


class Exporter:
    """Base class: the hooks do nothing until a format overrides them."""

    RAW: ClassVar[bool] = False  # fed the records themselves (``records``) instead of frames
    SLICES: ClassVar[bool] = False  # with RAW: fed them as they are stored (``slice``), not as columns
    REPLAY: ClassVar[int] = stacks.FRAMES  # what the replay makes for it (stacks.FRAMES, TREE...)

    def __init__(self, run: runinfo.Run, out: BinaryIO) -> None:
        self.run = run
        self.out = out

    def records(self, thread: int, times: list[int], ids: list[int], codes: list[int]) -> None:
        """Only when RAW: a chunk of one thread's records (see stacks.RecordSink)."""

    def slice(self, thread: int, data: memoryview) -> None:
        """Only when SLICES: a piece of one thread's 16-byte records, as stored (see stacks.walk_slices)."""

    def enter(self, thread: int, t: int, fid: int, parent: int, kind: int) -> None:
        """A frame starts (see stacks.Sink)."""

    def leave(self, thread: int, t: int, fid: int, parent: int, start: int, self_ns: int) -> None:
        """A frame ends after `t - start` ns, `self_ns` of them outside its callees."""

    def gap(self, thread: int, start: int, end: int) -> None:
        """Events were lost between start and end."""

    def take_frames(self, replay: _core.Replay) -> None:
        """With stacks.FRAMES: takes the frames the replay made so far (by default into
        ``enter``/``leave``/``gap``; a writer may format them in C instead)."""
        stacks.deliver(replay.take(), self)

    def replayed(self, replay: _core.Replay) -> None:
        """Unless RAW: the replay, closed, after the last frame (its tree() or pstats())."""

    def finish(self) -> None:
        """All events were fed: complete the output."""


def exporter_class(fmt: str) -> type[Exporter]:
    module = importlib.import_module(f"ulma.exporters.{FORMATS[fmt]}")
    cls: type[Exporter] = module.EXPORTER
    return cls


def export(trace_path: str, fmt: str, out_path: str) -> runinfo.Run:
    """Converts a trace; if converting fails, the output is not written.
    Raises trace.TraceError for a file that is not a readable trace."""
    reader = trace.TraceReader(trace_path)
    run = runinfo.scan(reader)
    cls = exporter_class(fmt)
    with contextlib.nullcontext(sys.stdout.buffer) if out_path == "-" else files.writing(out_path) as out:
        # a file is 0600 and never written through a link; it appears whole, or not at all
        exporter = cls(run, out)
        if cls.SLICES:
            stacks.walk_slices(reader, run, exporter.slice)
        elif cls.RAW:
            stacks.walk_records(reader, run, exporter)
        else:
            take = exporter.take_frames if cls.REPLAY & stacks.FRAMES else None
            exporter.replayed(stacks.replay(reader, run, cls.REPLAY, take))
        exporter.finish()
        out.flush()
    # what only the second pass can find (an events chunk that does not decompress)
    run.warnings.extend(w for w in reader.warnings if w not in run.warnings)
    return run
