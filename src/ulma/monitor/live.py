"""A run watched live: the drain loop in a worker thread, snapshots on demand,
and the figures that say how well the monitor keeps up (its "health").

Views read only ``LiveRun.snapshot()``; everything here is thread-safe
through the session's lock."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Protocol, Self

from ulma.monitor.attach import Attachment
from ulma.monitor.control import ChannelFull, Control
from ulma.monitor.profile import Profile, Symbol
from ulma.monitor.session import Run, RunResult, Session
from ulma.monitor.step import Stepper
from ulma.views.units import fmt_ns


@dataclass(frozen=True, slots=True)
class Health:
    """The monitor's own figures at one moment."""

    at_ns: int  # CLOCK_MONOTONIC when taken
    cpu_s: float  # this process's CPU time so far (all its threads)
    events: int  # events drained so far, every thread
    dropped: int  # events the program could not write because a ring was full
    fill: float  # fullest ring's unread share, 0..1
    lag_ns: int | None  # age of the newest event drained; None before the first and after the end
    slots: tuple[tuple[int, int], ...]  # (ring slot, OS thread id) of each traced thread
    returncode: int | None  # the program's exit code once it ended


@dataclass(frozen=True, slots=True)
class Rates:
    events_per_s: float
    cpu_percent: float


def rates(before: Health, after: Health) -> Rates:
    """Events drained per second and the monitor's CPU use between two readings."""
    dt = (after.at_ns - before.at_ns) / 1e9
    if dt <= 0:
        return Rates(0.0, 0.0)
    return Rates((after.events - before.events) / dt, 100 * (after.cpu_s - before.cpu_s) / dt)


@dataclass(frozen=True, slots=True)
class Snapshot:
    profile: Profile  # wall_ns: the time the totals cover (since start or the last clear)
    health: Health


class LiveSource(Protocol):
    """What a live view reads: a program being drained, seen from the monitor."""

    done: threading.Event  # set when the drain loop ended (the program exited, or `error`)
    error: BaseException | None

    @property
    def returncode(self) -> int | None: ...
    @property
    def pid(self) -> int: ...
    @property
    def cleared(self) -> bool: ...
    def elapsed_ns(self) -> int: ...
    def started(self) -> bool: ...
    def interrupt(self) -> None: ...
    def clear(self) -> None: ...
    def snapshot(self, thread: int | None = None) -> Snapshot: ...
    def health(self) -> Health: ...
    @property
    def control(self) -> Control: ...
    @property
    def session(self) -> Session: ...
    @property
    def stepper(self) -> Stepper: ...
    def symbols(self) -> dict[int, Symbol]: ...


class _DrainThread:
    """A drain loop in a worker thread: ``done`` once it ended, ``error`` if it failed."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ulma-drain", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    @property
    def session(self) -> Session:
        """The session drained (the run's or the attachment's)."""
        raise NotImplementedError

    @property
    def control(self) -> Control:
        """The channel to the agent: functions off and on."""
        return self.session.control

    @property
    def stepper(self) -> Stepper:
        """Single-step, through the same channel."""
        return self.session.stepper

    def symbols(self) -> dict[int, Symbol]:
        """The functions known so far, by id (a copy)."""
        with self.session.lock:
            return dict(self.session.symbols)

    def _run(self) -> None:
        try:
            self._drain(self._stop)
        except BaseException as exc:  # reported by the caller; the thread must not die silently
            self.error = exc
        finally:
            self.done.set()

    def _drain(self, stop: threading.Event) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 10.0) -> None:
        """Ends the drain loop (the program is not touched) and waits for it."""
        self._stop.set()
        self._thread.join(timeout)


class LiveRun(_DrainThread):
    """A `Run` drained by a worker thread so a view can watch it.

    ``done`` is set when the drain loop ended: the program exited (then its
    last events are already read) or the loop failed (``error``)."""

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.run = run

    def _drain(self, stop: threading.Event) -> None:
        if self.run.drain_until_exit(stop) is not None:
            self.run.settle()  # the view shows the final totals, unpublished events too

    @property
    def returncode(self) -> int | None:
        return self.run.returncode if self.done.is_set() else None

    def elapsed_ns(self) -> int:
        """Run time so far, or the program's own once it ended."""
        return self.run.elapsed_ns()

    @property
    def pid(self) -> int:
        return self.run.proc.pid

    def finish(self) -> RunResult:
        """The run's result once the drain ended (wait for ``done`` first), saying on stderr what
        its user must know of it: the monitor failing, or history cleared during the run (the
        report then covers less)."""
        if self.error is not None:
            sys.stderr.write(f"ulma: error: the monitor stopped draining: {self.error}\n")
        result = self.run.finish()
        if self.run.cleared:
            sys.stderr.write(f"ulma: history was cleared during the run; the report covers the last "
                             f"{fmt_ns(result.profile.wall_ns)}\n")
        return result

    def started(self) -> bool:
        """False once it is known that the program never ran (bad module,
        unreadable script): the agent never came up."""
        return bool(self.run.session.counters()["agent_state"] != 0)

    def interrupt(self) -> None:
        """Ctrl-C for the program: the view owns the terminal, so the
        terminal cannot send it."""
        if self.run.proc.poll() is None:
            state, stop = self.stepper.state()
            if state == "stopped" and stop is not None and stop.os_tid != self.run.proc.pid:
                # Only the main thread sees Ctrl-C (it runs the handler), so a
                # worker stopped in step mode would stay stopped while the main
                # thread ends the program (and waits for it): step mode ends, as
                # the agent ends it when the main thread is the one stopped.
                with contextlib.suppress(ChannelFull):
                    self.stepper.cont()
            self.run.proc.send_signal(signal.SIGINT)

    def clear(self) -> None:
        self.run.clear()

    @property
    def cleared(self) -> bool:
        return self.run.cleared

    def snapshot(self, thread: int | None = None) -> Snapshot:
        profile = self.run.live_profile(thread=thread)
        return Snapshot(profile, self.health())

    @property
    def session(self) -> Session:
        return self.run.session

    def health(self) -> Health:
        return health_of(self.run.session, self.done.is_set(), self.returncode)


def health_of(session: Session, done: bool, returncode: int | None) -> Health:
    """The monitor's figures for a session now."""
    with session.lock:
        threads = session.core.threads()
        now_ticks, _ = session.core.clock()
    # Only a ring that is still being written has a meaningful lag.
    last = max((t["last_tick"] for t in threads if t["events"] and not t["closed"]), default=0)
    lag = round((now_ticks - last) * session.ns_per_tick()) if last else None
    return Health(
        at_ns=time.monotonic_ns(),
        cpu_s=time.process_time(),
        events=sum(t["events"] for t in threads),
        dropped=sum(t["dropped"] for t in threads),
        fill=max((t["fill"] for t in threads), default=0.0),
        lag_ns=max(lag, 0) if lag is not None and not done else None,
        slots=tuple((t["thread"], t["os_tid"]) for t in threads),
        returncode=returncode,
    )


class LiveAttachment(_DrainThread):
    """An attachment drained by a worker thread so the live view can watch it.
    ``interrupt`` (Ctrl-C in the view) detaches: the program goes on."""

    def __init__(self, attachment: Attachment, duration: float | None = None) -> None:
        super().__init__()
        self.attachment = attachment
        self.duration = duration
        self.why = ""
        self._cleared = False

    def _drain(self, stop: threading.Event) -> None:
        self.why = self.attachment.drain_until(stop, self.duration)

    @property
    def returncode(self) -> int | None:
        return None  # not our child: its exit code is not ours to see

    @property
    def pid(self) -> int:
        return self.attachment.pid

    @property
    def cleared(self) -> bool:
        return self._cleared

    def elapsed_ns(self) -> int:
        return self.attachment.elapsed_ns()

    def started(self) -> bool:
        return True

    def interrupt(self) -> None:
        self._stop.set()

    def clear(self) -> None:
        self.attachment.clear()
        self._cleared = True

    def snapshot(self, thread: int | None = None) -> Snapshot:
        return Snapshot(self.attachment.live_profile(thread=thread), self.health())

    @property
    def session(self) -> Session:
        return self.attachment.session

    def health(self) -> Health:
        return health_of(self.attachment.session, self.done.is_set(), None)
