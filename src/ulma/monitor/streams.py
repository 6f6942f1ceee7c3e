"""Live streams for other tools, written while the program runs (``--log``, ``--jsonl``).

``--log FILE``: the lines of ``ulma export --format text`` (ulma.exporters.text),
made by the same exporter from the same drained records the trace file gets
(``-o``), as they are drained.  A writer thread converts and writes them, so a
slow disk never holds up draining: what waits for it is bounded
(``LOG_QUEUE_BYTES``).  Beyond that the events of a drain are not written to the
log -- counted, said in the log itself by a ``# ulma:`` comment line before the
next lines of that thread, in the ``--jsonl`` objects and on stderr at the end --
and the profile, the trace and the program go on as before.

The log's times use one calibration, fixed when its first events are converted
(the session's calibration then, over the program's start-up); a trace written
in the same run records it (``text_ns_per_tick``), and its text export uses it,
so the two agree line for line (each thread's lines in the same order; lines of
different threads interleave by drain here, by chunk in the trace).

``--jsonl FILE``: one JSON object per line, every ``JSONL_SECONDS`` while the
program runs and a last one (``"final": true``) with the final totals; the
fields are those of ``--json``'s functions, plus the monitor's health (see
``jsonl_object``; the README documents them).

Both files are opened at once under their final name (0600, no link
followed: ulma.format.files), before the program starts.  Every write ends
at the end of a line, so between writes the file holds whole lines only.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ulma.format import files
from ulma.format.records import SYM_TASK, TASK_SYMBOL_BASE, Symbol
from ulma.monitor.profile import Profile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ulma.monitor.live import Health
    from ulma.monitor.session import Session

JSONL_VERSION = 1
JSONL_SECONDS = 0.5  # between two objects of --jsonl
# bytes of drained records waiting for the log's writer at most; a drain that would pass it
# is not written to the log (counted and said), so a slow disk costs the monitor no memory
LOG_QUEUE_BYTES = 32 << 20
EVENT_BYTES = 16
PIECE_BYTES = 8192 * EVENT_BYTES  # records converted at once (about a millisecond of the GIL)
WRITE_BYTES = 4 << 20  # text held before it is written, at most (and a piece's)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def open_output(path: str) -> files.NewFile:
    """A stream's file under its final name at once (0600, no link followed);
    OSError naming it if it cannot be written."""
    try:
        return files.NewFile(path, at_once=True)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}") from None


class _Collect:
    """What the text exporter writes to: its lines, kept until written at once."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        self.size = 0
        return data


class LogWriter:
    """``--log``: the drained records as text export lines, written by a thread of its own."""

    def __init__(self, path: str) -> None:
        from ulma.exporters import text

        self.path = path
        self.file = open_output(path)
        self.error: str | None = None
        self.ns_per_tick: float | None = None  # fixed by the first events (see the module's doc)
        self.written = 0  # events converted and written
        self.dropped = 0  # events not written: the writer was too far behind
        self._lost: dict[int, int] = {}  # thread -> events dropped, not yet said in the log
        self._items: deque[tuple[list[tuple[int, int, int, str, str, int]],
                                 list[tuple[int, bytes]], dict[int, int]]] = deque()
        self._bytes = 0
        self._closing = False
        self._cond = threading.Condition()
        self._session: Session | None = None
        self._pid = 0
        self._exporter: text.TextExporter | None = None
        self._out = _Collect()
        self._frames: dict[int, Symbol] = {}  # the symbols so far, by id
        self._tasks: dict[int, str] = {}  # asyncio task number -> name
        self._tids: dict[int, int] = {}  # thread -> OS thread id
        self.known_threads: set[int] = set()  # threads whose OS id was looked up
        try:
            _write_all(self.file.fd, text.HEADER.encode())
        except OSError as exc:
            self.file.discard()
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}") from None
        self._thread = threading.Thread(target=self._loop, name="ulma-log-writer", daemon=True)

    def start(self, session: Session, pid: int) -> None:
        """Once; later calls do nothing (an attach starts the log before the agent answers)."""
        if self._thread.ident is not None:
            return
        self._session = session
        self._pid = pid
        self._thread.start()

    def halt(self) -> None:
        """Ends the writer thread, if started, once it has written what is queued."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.ident is not None:
            self._thread.join()

    def write(self, symbols: list[tuple[int, int, int, str, str, int]],
              chunks: list[tuple[int, bytes]], tids: dict[int, int]) -> None:
        """From the drain: new symbols, records per thread, OS ids of new threads.  Never waits."""
        if self.error is not None or not (symbols or chunks or tids):
            return
        if chunks and self.ns_per_tick is None:
            assert self._session is not None
            self.ns_per_tick = self._session.ns_per_tick()
        size = sum(len(data) for _, data in chunks)
        with self._cond:
            if self._items and self._bytes + size > LOG_QUEUE_BYTES:
                for thread, data in chunks:
                    n = len(data) // EVENT_BYTES
                    self._lost[thread] = self._lost.get(thread, 0) + n
                    self.dropped += n
                chunks, size = [], 0
                if not (symbols or tids):
                    return
            self._items.append((symbols, chunks, tids))
            self._bytes += size
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closing:
                    self._cond.wait()
                if not self._items:
                    return
                items = list(self._items)
                self._items.clear()
                self._bytes = 0
                lost = self._lost
                self._lost = {}
            if self.error is not None:
                continue  # keep taking items: the drain never waits for us
            try:
                self._convert(items, lost)
                _write_all(self.file.fd, self._out.take())
            except OSError as exc:
                self._out.take()
                self.error = f"cannot write the log {self.path}: {exc.strerror or exc}; the log stopped"

    def _convert(self, items: list[tuple[list[tuple[int, int, int, str, str, int]],
                                         list[tuple[int, bytes]], dict[int, int]]],
                 lost: dict[int, int]) -> None:
        from ulma.exporters import text
        from ulma.format import runinfo

        for symbols, chunks, tids in items:
            self._tids.update(tids)
            for sid, kind, flags, name, file, line in symbols:
                if kind == SYM_TASK:  # a task's name (text.py writes it on `task` lines)
                    self._tasks[sid - TASK_SYMBOL_BASE] = name
                else:
                    self._frames[sid] = Symbol(sid, kind, flags, name, file, line)
            if self._exporter is None and chunks:  # the calibration is fixed with the first events
                assert self._session is not None and self.ns_per_tick is not None
                run = runinfo.Run(path=self.path, meta={}, end=None, frames=self._frames,
                                  ns_per_tick=self.ns_per_tick,
                                  start_ticks=self._session.start_ticks, pid=self._pid,
                                  os_tids=self._tids, events={}, tasks=self._tasks)
                self._exporter = text.TextExporter(run, self._out)  # type: ignore[arg-type]
                self._out.take()  # its header is already in the file
            for thread, data in chunks:
                assert self._exporter is not None
                n = lost.pop(thread, 0)
                if n:
                    self._out.write(self._lost_line(thread, n))
                view = memoryview(data)
                # in pieces: the conversion holds the GIL, which the drain needs between drains
                for at in range(0, len(view), PIECE_BYTES):
                    self._exporter.slice(thread, view[at:at + PIECE_BYTES])
                    if self._out.size >= WRITE_BYTES:  # whole lines: a piece ends at a line's end
                        _write_all(self.file.fd, self._out.take())
                self.written += len(data) // EVENT_BYTES
        for thread, n in lost.items():  # dropped, and nothing of theirs came after
            self._out.write(self._lost_line(thread, n))

    def _lost_line(self, thread: int, n: int) -> bytes:
        """The comment that says, in the log, where events are missing."""
        return (f"# ulma: {n} events of thread {self._tids.get(thread, thread)} are not in this "
                "log: it fell behind (its disk was slow)\n").encode()

    def close(self) -> list[str]:
        """Writes what is queued, closes the file; what the user must be told."""
        self.halt()
        if self._lost and self.error is None:  # dropped at the very end
            try:
                self._convert([], self._lost)
                _write_all(self.file.fd, self._out.take())
            except OSError as exc:
                self.error = f"cannot write the log {self.path}: {exc.strerror or exc}; the log stopped"
        self.file.close()
        said = []
        if self.dropped:
            said.append(f"warning: the log {self.path} fell behind: {self.dropped} events are not in "
                        "it (see its '# ulma:' lines); the report and the trace have them")
        if self.error is not None:
            said.append(f"error: {self.error}")
        return said


def jsonl_object(seq: int, profile: Profile, health: Health | None, rates: tuple[float, float] | None,
                 log: LogWriter | None, *, pid: int, final: bool) -> dict[str, Any]:
    """One line of --jsonl (version JSONL_VERSION; later versions add fields, never rename)."""
    from ulma.exporters.json_report import _edge, _function, _process, asyncio_object, counter_object

    known = profile.split_known
    processes = [_process(p, None, edges=False) for p in profile.processes]
    return {
        "v": JSONL_VERSION,
        "seq": seq,
        "time": round(time.time(), 3),
        "final": final,
        "pid": pid,
        "wall_ns": profile.wall_ns,
        "monitor": {
            "events": health.events if health else profile.events,
            "dropped": health.dropped if health else profile.dropped,
            "ring_fill": round(health.fill, 4) if health else None,
            "lag_ns": health.lag_ns if health else None,
            "threads": len(health.slots) if health else len(profile.threads),
            "events_per_s": round(rates[0], 1) if rates else None,
            "cpu_percent": round(rates[1], 1) if rates else None,
            "log_written": log.written if log else None,
            "log_dropped": log.dropped if log else None,
        },
        "cpu_readings": known,
        "probe_ns": round(profile.probe_ns, 2),
        "functions": [_function(f, known) for f in profile.functions],
        "edges": [_edge(e) for e in profile.edges],
        "asyncio": asyncio_object(profile),
        "counters": [counter_object(c) for c in profile.counters],
        **({"processes": processes} if processes else {}),
    }


class JsonlWriter:
    """``--jsonl``: a thread that writes one object every JSONL_SECONDS, and a last one."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.file = open_output(path)
        self.error: str | None = None
        self.seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: Health | None = None
        self._pid = 0
        self._log: LogWriter | None = None

    def start(self, snapshot: Callable[[], tuple[Profile, Health]], pid: int,
              log: LogWriter | None) -> None:
        self._pid = pid
        self._log = log
        self._thread = threading.Thread(target=self._loop, args=(snapshot,), name="ulma-jsonl",
                                        daemon=True)
        self._thread.start()

    def _loop(self, snapshot: Callable[[], tuple[Profile, Health]]) -> None:
        while not self._stop.wait(JSONL_SECONDS):
            try:
                profile, health = snapshot()
            except Exception:  # the session went away under us: the last object says the end
                return
            self._put(profile, health, final=False)

    def _put(self, profile: Profile, health: Health | None, *, final: bool) -> None:
        from ulma.monitor.live import rates

        if self.error is not None:
            return
        r = None
        if health is not None and self._last is not None:
            got = rates(self._last, health)
            r = (got.events_per_s, got.cpu_percent)
        if health is not None:
            self._last = health
        line = json.dumps(jsonl_object(self.seq, profile, health, r, self._log, pid=self._pid,
                                       final=final), separators=(",", ":")) + "\n"
        self.seq += 1
        try:
            _write_all(self.file.fd, line.encode())
        except OSError as exc:
            self.error = f"cannot write {self.path}: {exc.strerror or exc}; --jsonl stopped"

    def stop(self) -> None:
        """No more periodic objects (before the session's final figures are taken)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def close(self, profile: Profile | None) -> list[str]:
        """The last object (the final totals), and the file closed."""
        self.stop()
        if profile is not None:
            self._put(profile, None, final=True)
        self.file.close()
        return [f"error: {self.error}"] if self.error else []


class Streams:
    """The streams a run or an attachment writes; files opened before the program starts."""

    def __init__(self, log_path: str | None, jsonl_path: str | None) -> None:
        self.log = LogWriter(log_path) if log_path else None
        try:
            self.jsonl = JsonlWriter(jsonl_path) if jsonl_path else None
        except BaseException:
            if self.log is not None:
                self.log.file.discard()
            raise

    def start_log(self, session: Session, pid: int) -> None:
        """The log's writer alone, for drains before start() (see LogWriter.start)."""
        if self.log is not None:
            self.log.start(session, pid)

    def start(self, session: Session, pid: int,
              snapshot: Callable[[], tuple[Profile, Health]]) -> None:
        if self.log is not None:
            self.log.start(session, pid)
        if self.jsonl is not None:
            self.jsonl.start(snapshot, pid, self.log)

    def stop(self) -> None:
        if self.jsonl is not None:
            self.jsonl.stop()

    def close(self, profile: Profile | None) -> list[str]:
        """After the last drain: the log written out, the last --jsonl object; the lines to say."""
        said: list[str] = []
        if self.log is not None:
            said += self.log.close()
        if self.jsonl is not None:
            said += self.jsonl.close(profile)
        return said

    def abandon(self) -> None:
        """The program never started: the files stay, empty but for the log's header."""
        if self.log is not None:
            self.log.halt()
        for f in (self.log, self.jsonl):
            if f is not None and f.file.fd >= 0:
                f.file.close()
