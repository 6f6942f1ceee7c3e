"""What `--history` and `--push-pprof` share: a thread of their own that works on the monitor's
live snapshots until it is stopped, and a failure said in one line on stderr, after which the run
goes on without them."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from ulma.monitor.profile import Profile


class Periodic:
    def __init__(self, name: str) -> None:
        self.error: str | None = None
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start(self, loop: Callable[[Callable[[], Profile]], None], snapshot: Callable[[], Profile]) -> None:
        self._thread = threading.Thread(target=loop, args=(snapshot,), name=self._name, daemon=True)
        self._thread.start()

    def _said(self, error: str) -> None:
        """`error` is this one's failure: said once, in one line."""
        self.error = error
        sys.stderr.write(f"ulma: {error}\n")
        sys.stderr.flush()

    def stop(self) -> None:
        """No more snapshots (before the session's final figures are taken)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
