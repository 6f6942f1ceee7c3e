"""What watches a session besides its report and views: ``--to`` (the stream to ``ulma collect``,
ulma.fleet.sender), ``--history`` and ``--push-pprof`` (ulma.cli.history.Observers) -- started,
stopped and finished the same way around any drain: the plain run, the live terminal view, the
browser's, an attachment.

``start`` before the first drain (the stream taps the session: the drain, in whatever thread it
runs, hands it its symbols and records without waiting); each takes live snapshots in threads of
its own; ``stop`` once the drain ended, before the session's final figures are taken; ``finish``
with them.

Imports stay light: `ulma run` loads this module on its way to the program."""

from __future__ import annotations

import argparse
import sys

from ulma.cli.history import Observers, observed

TYPE_CHECKING = False
if TYPE_CHECKING:  # (typing is never imported by `ulma run`: tests/integration/test_footprint.py)
    from collections.abc import Callable

    from ulma.fleet.sender import Streamer
    from ulma.monitor import session as sessions
    from ulma.monitor.live import Health
    from ulma.monitor.profile import Profile


class Watchers:
    """The --to, --history and --push-pprof of one session (their options checked already)."""

    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.streamer: Streamer | None = getattr(opts, "streamer", None)
        self.observed = observed(opts)
        self.observers: Observers | None = None
        self.pid = 0
        self.started = False

    def __bool__(self) -> bool:
        return self.streamer is not None or self.observed

    def start(self, session: sessions.Session, snapshot: Callable[[], tuple[Profile, Health]], pid: int,
              command: str) -> None:
        """Before the first drain of `session` (or as early as can be); `snapshot`: the live totals
        (the program's children added in as the report adds them) and the monitor's health."""
        self.pid = pid
        self.started = True
        if self.streamer is not None:
            self.streamer.start(session, snapshot, pid, command)
        if self.observed:
            self.observers = Observers(self.opts, pid, command)
            self.observers.start(lambda: snapshot()[0])

    def stop(self) -> None:
        """No more snapshots: the drain ended, the session's final figures come next."""
        if self.streamer is not None:
            self.streamer.stop_snapshots()
        if self.observers is not None:
            self.observers.stop()

    def finish(self, profile: Profile, returncode: int | None = None, started: bool = True) -> None:
        """The final figures sent, written and pushed; what to say, said."""
        if not self.started:
            return
        if self.streamer is not None:
            from ulma.fleet.sender import end_of

            end = end_of(profile, self.streamer.last_scale or 1.0, returncode, self.pid)
            for line in self.streamer.finish(profile, end):
                sys.stderr.write(f"ulma: {line}\n")
        if self.observers is not None:
            self.observers.close(profile if started else None)


def run(target: sessions.Target, options: sessions.Options, watchers: Watchers) -> sessions.RunResult:
    """As ulma.monitor.session.run (the drain in this thread), watched."""
    from ulma.monitor import session as sessions
    from ulma.monitor.terminal import Forwarding

    running = sessions.Run(target, options)
    watchers.start(running.session, running._stream_snapshot, running.proc.pid, running.command)
    with Forwarding().to(running.proc):
        running.drain_until_exit()
    watchers.stop()
    result = running.finish()  # (its last drain is taken too)
    watchers.finish(result.profile, result.returncode, result.started)
    return result
