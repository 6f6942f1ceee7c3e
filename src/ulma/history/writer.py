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
import sys
import threading
import time
from collections.abc import Callable

from ulma.history import HistoryError, first_line
from ulma.history.dsn import Dsn
from ulma.history.store import FUNCTION_COLUMNS, RUN_COLUMNS, Row, Store, open_store
from ulma.monitor.profile import Profile

Key = tuple[str, str, int]
Totals = dict[Key, tuple[int, ...]]
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


def new_run_id(pid: int) -> str:
    """Readable, in time order, and apart from another host's run of the same second."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{pid}-{os.urandom(2).hex()}"


class HistoryWriter:
    def __init__(self, dsn: Dsn, pid: int, command: str) -> None:
        self.dsn = dsn
        self.pid = pid
        self.command = command
        self.host = socket.gethostname()
        self.run_id = new_run_id(pid)
        self.rows = 0
        self.error: str | None = None
        self._store: Store | None = None
        self._prev: Totals = {}
        self._prev_t = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, snapshot: Callable[[], Profile]) -> None:
        self._prev_t = time.time()
        self._thread = threading.Thread(target=self._loop, args=(snapshot,), name="ulma-history",
                                        daemon=True)
        self._thread.start()

    def _fail(self, exc: BaseException) -> None:
        why = str(exc) if isinstance(exc, HistoryError) else first_line(exc)
        self.error = f"history failed: {why}; the run goes on without it"
        sys.stderr.write(f"ulma: {self.error}\n")
        sys.stderr.flush()

    def _open(self, started: float) -> bool:
        try:
            self._store = open_store(self.dsn, create=True)
            self._store.insert("runs", RUN_COLUMNS,
                               [(self.run_id, self.host, self.pid, self.command, int(started))])
        except Exception as exc:
            self._fail(exc)
            return False
        return True

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
        if self._store is None or self.error is not None:
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
        try:
            self._store.insert("functions", FUNCTION_COLUMNS, rows)
        except Exception as exc:
            self._fail(exc)
            return False
        self.rows += len(rows)
        self._prev, self._prev_t = current, now
        return True

    def stop(self) -> None:
        """No more snapshots (before the session's final figures are taken)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def close(self, final: Profile | None) -> str | None:
        """The last rows from the final totals; the line to say (None: the failure was said)."""
        self.stop()
        if self._store is None:
            return None
        try:
            if final is not None and self.error is None:
                self._write(final)
        finally:
            self._store.close()
        if self.error is not None:
            return None
        return f"history: {self.rows} rows of run {self.run_id} in {self.dsn.where()}"
