"""``ulma run`` with the live view: the program runs while a full-screen table
shows where its time goes; the end-of-run report follows as without it.

The view owns the terminal, so the program gets /dev/null as stdin and its
stdout/stderr go to temporary files that are passed through once the view
closes (or shown in a pane with --output-pane, and passed through as well).
Closing the view does not stop the program: ulma keeps draining until it
exits, so the report covers the whole run (or what followed a clear)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from ulma.monitor import session as sessions
from ulma.monitor.live import LiveRun
from ulma.monitor.output import Captured
from ulma.views.live import LiveView, ViewSettings
from ulma.views.units import fmt_ns

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

PASS_THROUGH_SECONDS = 0.1  # how often output is copied while waiting for the program


def run_live(target: sessions.Target, options: sessions.Options, settings: ViewSettings, *,
             output_pane: bool = False) -> sessions.RunResult:
    captured = Captured()
    settings.output = captured if output_pane else None
    try:
        running = sessions.Run(target, options, stdin=subprocess.DEVNULL,
                               stdout=captured.stdout.file, stderr=captured.stderr.file)
        with _signals(running.proc, settings.close_requested):
            live = LiveRun(running).start()
            _show(live, settings)
            captured.pass_through(sys.stdout.buffer, sys.stderr.buffer)
            _wait_for_exit(live, captured)
        if live.error is not None:
            sys.stderr.write(f"ulma: error: the monitor stopped draining: {live.error}\n")
        result = running.finish()
        if running.cleared:
            sys.stderr.write(f"ulma: history was cleared during the run; the report covers the last "
                             f"{fmt_ns(result.profile.wall_ns)}\n")
        return result
    finally:
        captured.close()


def _show(live: LiveRun, settings: ViewSettings) -> None:
    """Runs the view; if it fails, says so and carries on (the program and
    its profile are not lost with it)."""
    try:
        LiveView(live, settings).run()
    except Exception as exc:
        sys.stderr.write(f"ulma: the live view failed ({type(exc).__name__}: {exc}); "
                         "the report follows when the program ends\n")


def _wait_for_exit(live: LiveRun, captured: Captured) -> None:
    if not live.done.is_set():
        sys.stderr.write(f"ulma: view closed; the program (pid {live.pid}) still runs and is profiled; "
                         "the report comes when it ends (Ctrl-C interrupts it)\n")
        sys.stderr.flush()
    while not live.done.wait(PASS_THROUGH_SECONDS):
        captured.pass_through(sys.stdout.buffer, sys.stderr.buffer)
    captured.pass_through(sys.stdout.buffer, sys.stderr.buffer)


class _signals:
    """As without the view: Ctrl-C is for the program (the terminal sends it
    to the whole process group once the view is closed; in the view it is a
    key that the view forwards), SIGTERM/SIGHUP are passed on and close the
    view."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, proc: subprocess.Popen[bytes], close: threading.Event) -> None:
        self.proc, self.close = proc, close
        self.old: dict[int, Handler] = {}

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        self.close.set()

    def __enter__(self) -> None:
        self.old = {sig: signal.getsignal(sig) for sig in self.SIGNALS}
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._forward)
        signal.signal(signal.SIGHUP, self._forward)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.old.items():
            signal.signal(sig, handler)
