"""``--history``: a run's figures into the history, second by second, while it runs.

A thread of its own opens the store (so the program starts without waiting for it), then once a
wall-clock second, just after the second turns, takes the monitor's live snapshot and writes, for
every function whose figures moved, the difference from the snapshot before: one row per function
for the second just ended (``ts`` is the second the interval began in).  At the end the final
totals -- the report's own -- less the last snapshot make the last rows, so a run's rows add up to
its report exactly, whatever the live snapshots counted of calls still open.

Nothing here stops the program or its report: a store that cannot be opened or written is one
line on stderr (``ulma: history failed: ...``), and the run goes on without history.
"""

from __future__ import annotations

import datetime
import os
import socket
import time
from collections.abc import Callable

from ulma.history import HistoryError, first_line
from ulma.history.dsn import Dsn
from ulma.history.periodic import Periodic
from ulma.history.spool import Spool
from ulma.history.store import (
    EDGE_COLUMNS,
    FUNCTION_COLUMNS,
    OBJECT_COLUMNS,
    RUN_COLUMNS,
    HistoryBusy,
    Row,
    Store,
    open_store,
)
from ulma.monitor.profile import Profile

Key = tuple[str, str, int]
Totals = dict[Key, tuple[int, ...]]
UNSPOOL_SECONDS = 2.0  # how long a run that spooled waits at its end for the chDB to be free
OFFSET = 0.02  # after the second turns: the snapshot's rows belong to the second just ended


def totals(profile: Profile) -> Totals:
    """Each function's figures (FIGURES), the same name, file and line added up."""
    out: Totals = {}
    for f in profile.functions:
        key = (f.name, f.file, f.line)
        row = (f.calls, f.total_ns, f.self_ns, f.cpu_ns, f.overhead_ns, f.wait_ns, f.unmeasured_ns,
               f.self_cpu_ns, f.self_wait_ns, f.self_overhead_ns)
        before = out.get(key)
        out[key] = row if before is None else tuple(a + b for a, b in zip(before, row, strict=True))
    return out


EdgeKey = tuple[str, str, int, str, str, int]


def edge_totals(profile: Profile) -> dict[EdgeKey, tuple[int, int]]:
    """Each caller-callee pair's calls and time, the same ends added up."""
    fs = profile.functions
    out: dict[EdgeKey, tuple[int, int]] = {}
    for e in profile.edges:
        a, b = fs[e.caller], fs[e.callee]
        key = (a.name, a.file, a.line, b.name, b.file, b.line)
        calls, total = out.get(key, (0, 0))
        out[key] = (calls + e.calls, total + e.total_ns)
    return out


def type_totals(profile: Profile) -> dict[str, tuple[int, int, int, int]]:
    """--objects: each type's made, destroyed of those, destroyed made before, live bytes (0: not
    told)."""
    out: dict[str, tuple[int, int, int, int]] = {}
    for t in profile.types:
        row = (t.created, t.freed, t.freed_untracked, t.bytes or 0)
        before = out.get(t.name)
        out[t.name] = row if before is None else (before[0] + row[0], before[1] + row[1],
                                                  before[2] + row[2], before[3] + row[3])
    return out


def new_run_id(pid: int) -> str:
    """Readable, in time order, and apart from another host's run of the same second."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{pid}-{os.urandom(2).hex()}"


class HistoryWriter(Periodic):
    def __init__(self, dsn: Dsn, pid: int, command: str) -> None:
        super().__init__("ulma-history")
        self.dsn = dsn
        self.pid = pid
        self.command = command
        self.host = socket.gethostname()
        self.run_id = new_run_id(pid)
        self.rows = 0
        self._store: Store | None = None
        self._spool: Spool | None = None  # chDB open in another ulma: rows kept beside it
        self._prev: Totals = {}
        self._prev_edges: dict[EdgeKey, tuple[int, int]] = {}
        self._prev_types: dict[str, tuple[int, int, int, int]] = {}
        self._prev_t = time.time()

    def start(self, snapshot: Callable[[], Profile]) -> None:
        self._prev_t = time.time()
        self._start(self._loop, snapshot)

    def _fail(self, exc: BaseException) -> None:
        why = str(exc) if isinstance(exc, HistoryError) else first_line(exc)
        self._said(f"history failed: {why}; the run goes on without it")

    def _open(self, started: float) -> bool:
        run = [(self.run_id, self.host, self.pid, self.command, int(started))]
        try:
            try:
                self._store = open_store(self.dsn, create=True)
            except HistoryBusy:
                self._spool = Spool(self.dsn.path, self.run_id)
                self._spool.insert("runs", run)
                return True
            self._store.insert("runs", RUN_COLUMNS, run)
        except Exception as exc:
            self._fail(exc)
            return False
        return True

    def _insert(self, rows: list[Row], edges: list[Row], objects: list[Row]) -> None:
        if self._spool is not None:
            self._spool.insert("functions", rows)
            self._spool.insert("edges", edges)
            if objects:
                self._spool.insert("objects", objects)
        elif self._store is not None:
            self._store.insert("functions", FUNCTION_COLUMNS, rows)
            self._store.insert("edges", EDGE_COLUMNS, edges)
            if objects:
                self._store.insert("objects", OBJECT_COLUMNS, objects)

    def _loop(self, snapshot: Callable[[], Profile]) -> None:
        if not self._open(self._prev_t):
            return
        while not self._stop.wait(1 - time.time() % 1 + OFFSET):
            try:
                profile = snapshot()
            except Exception:  # the session went away under us: the final totals come in close()
                return
            if not self._write(profile):
                return

    def _write(self, profile: Profile) -> bool:
        """The rows since the last snapshot; False once writing failed."""
        if (self._store is None and self._spool is None) or self.error is not None:
            return False
        now = time.time()
        current = totals(profile)
        second = int(self._prev_t)
        rows: list[Row] = []
        for key, figures in current.items():
            before = self._prev.get(key)
            delta = figures if before is None else tuple(a - b for a, b in zip(figures, before, strict=True))
            if any(delta):
                rows.append((second, self.host, self.pid, self.run_id, *key, *delta))
        current_edges = edge_totals(profile)
        edges: list[Row] = []
        for ekey, (calls, total) in current_edges.items():
            calls0, total0 = self._prev_edges.get(ekey, (0, 0))
            if calls != calls0 or total != total0:
                edges.append((second, self.host, self.pid, self.run_id, *ekey, calls - calls0,
                              total - total0))
        current_types = type_totals(profile)
        objects: list[Row] = []
        for name, counts in current_types.items():
            before4 = self._prev_types.get(name, (0, 0, 0, 0))
            change = tuple(a - b for a, b in zip(counts, before4, strict=True))
            if any(change):
                objects.append((second, self.host, self.pid, self.run_id, name, *change))
        try:
            self._insert(rows, edges, objects)
        except Exception as exc:
            self._fail(exc)
            return False
        self.rows += len(rows)
        self._prev, self._prev_edges, self._prev_t = current, current_edges, now
        self._prev_types = current_types
        return True

    def close(self, final: Profile | None) -> str | None:
        """The last rows from the final totals; the line to say (None: the failure was said)."""
        self.stop()
        if self._store is None and self._spool is None:
            return None
        try:
            if final is not None and self.error is None:
                self._write(final)
        finally:
            if self._store is not None:
                self._store.close()
        if self._spool is not None:
            return self._unspool()
        if self.error is not None:
            return None
        return f"history: {self.rows} rows of run {self.run_id} in {self.dsn.where()}"

    def _unspool(self) -> str | None:
        """The spool ended; taken in now if the chDB is free within a moment, else left for the
        next ulma that opens it."""
        assert self._spool is not None
        try:
            self._spool.close()
        except OSError as exc:
            self._fail(exc)
            return None
        if self.error is not None:
            return None
        deadline = time.monotonic() + UNSPOOL_SECONDS
        while True:
            try:
                open_store(self.dsn, create=True).close()  # opening it takes the spool in
                return f"history: {self.rows} rows of run {self.run_id} in {self.dsn.where()}"
            except HistoryBusy:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            except Exception:
                break
        return (f"history: {self.rows} rows of run {self.run_id} kept in {self._spool.path} (the chDB was "
                "open in another ulma): the next ulma to open it takes them in")
