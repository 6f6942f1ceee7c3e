"""``ulma run`` with the live view: the program runs while a full-screen table
shows where its time goes; the end-of-run report follows as without it.

The view owns the terminal, so the program gets /dev/null as stdin and its
stdout/stderr go to files that are passed through once the view closes (or
shown in a pane with --output-pane, and passed through as well); if the
terminal goes away or ulma is killed first, they stay for the next ulma to
name (see ``ulma.monitor.output``).
Closing the view does not stop the program: ulma keeps draining until it
exits, so the report covers the whole run (or what followed a clear)."""

from __future__ import annotations

import subprocess
import sys

from ulma.cli.watchers import Watchers
from ulma.monitor import session as sessions
from ulma.monitor import terminal
from ulma.monitor.live import LiveRun
from ulma.monitor.output import Captured
from ulma.views.live import LiveView, ViewSettings

PASS_THROUGH_SECONDS = 0.1  # how often output is copied while waiting for the program


def run_live(target: sessions.Target, options: sessions.Options, settings: ViewSettings,
             watchers: Watchers, *, output_pane: bool = False) -> sessions.RunResult:
    """`watchers` (--to, --history, --push-pprof) are started before the drain thread and
    finished with the run's final figures."""
    captured = Captured(command=f"ulma run {settings.title}")
    if captured.warning:
        sys.stderr.write(f"ulma: warning: {captured.warning}\n")
    settings.output = captured if output_pane else None
    signals = terminal.Forwarding(settings.close_requested.set)
    settings.terminal_gone = signals.check_terminal
    try:
        running = sessions.Run(target, options, stdin=subprocess.DEVNULL,
                               stdout=captured.stdout.file, stderr=captured.stderr.file, step=settings.step)
        watchers.start(running.session, running._stream_snapshot, running.proc.pid, running.command)
        with signals.to(running.proc):
            live = LiveRun(running).start()
            _show(live, settings)
            _pass_through(captured, signals)
            _wait_for_exit(live, captured, signals)
        watchers.stop()
        result = live.finish()
        watchers.finish(result.profile, result.returncode, result.started)
        return result
    finally:
        # What the terminal could not show any more is kept for the next ulma to name.
        captured.close(keep=signals.hung_up)


def _show(live: LiveRun, settings: ViewSettings) -> None:
    """Runs the view; if it fails, says so and carries on (the program and
    its profile are not lost with it)."""
    try:
        LiveView(live, settings).run()
    except Exception as exc:
        sys.stderr.write(f"ulma: the live view failed ({type(exc).__name__}: {exc}); "
                         "the report follows when the program ends\n")


def _pass_through(captured: Captured, signals: terminal.Forwarding) -> None:
    if not signals.hung_up:  # then the output stays in its files
        captured.pass_through(sys.stdout.buffer, sys.stderr.buffer)


def _wait_for_exit(live: LiveRun, captured: Captured, signals: terminal.Forwarding) -> None:
    if not live.done.is_set() and not signals.hung_up:
        sys.stderr.write(f"ulma: view closed; the program (pid {live.pid}) still runs and is profiled; "
                         "the report comes when it ends (Ctrl-C interrupts it)\n")
        sys.stderr.flush()
    while not live.done.wait(PASS_THROUGH_SECONDS):
        _pass_through(captured, signals)
    _pass_through(captured, signals)
