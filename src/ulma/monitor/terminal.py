"""The terminal going away (SIGHUP), seen from a monitor that drew on it.

A terminal that hung up fails every write with EIO and every termios call
too.  Once that is known, the descriptors that were the terminal are pointed
at /dev/null: what is still written on the way out (the live view restoring
the screen, the report) goes nowhere instead of failing, as it would have
been lost anyway, and the files the user asked for (--json, -o) still get
written."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import termios
from collections.abc import Callable
from types import FrameType

TYPE_CHECKING = False  # typing is for the type checker only: `ulma run` does not import it
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    from ulma.monitor.prestart import Child

    Handler: TypeAlias = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

STANDARD = (0, 1, 2)


def terminals() -> tuple[int, ...]:
    """Which of stdin, stdout and stderr are a terminal now."""
    return tuple(fd for fd in STANDARD if os.isatty(fd))


def hung_up(fds: tuple[int, ...]) -> bool:
    """True if the terminal that `fds` were went away (the kernel answers EIO)."""
    for fd in fds:
        try:
            termios.tcgetattr(fd)
        except termios.error as exc:
            if exc.args and exc.args[0] == errno.EIO:
                return True
    return False


def let_go(fds: tuple[int, ...]) -> None:
    """Points `fds` at /dev/null (safe in a signal handler: no Python I/O objects are touched)."""
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.dup2(null, fd)
    finally:
        os.close(null)


class Forwarding:
    """The signals of a monitor whose program runs in the foreground, as with
    python itself in a terminal: Ctrl-C is for the program (the terminal sends
    it to the whole process group, which the program shares with ulma); SIGTERM
    and SIGHUP are passed on to the program (then `on_signal` is called: a live
    view closes), and ulma ends when the program does, with the report and the
    files asked for (--json, -o), its exit status the program's.

    They are passed on as ``timeout`` does: a signal sent to ulma alone
    (``kill PID``; a terminal that goes away signals only its session's
    leader, which is ulma when tmux or a terminal emulator runs it directly)
    would otherwise never reach the program.  A program that ignores or
    handles them goes on, profiled, as it would without ulma.

    SIGHUP from a terminal that went away also points the descriptors that were
    the terminal at /dev/null (``let_go``).  Once a signal came, SIGTERM and
    SIGHUP are ignored for the rest of ulma's life, so that a second one (a
    shell passes SIGHUP on too) does not cut the files asked for short."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, on_signal: Callable[[], None] | None = None) -> None:
        self.on_signal = on_signal
        self.proc: Child | None = None
        self.received: int | None = None
        self.hung_up = False
        self.terminals = terminals()
        self._old: dict[int, Handler] = {}

    def to(self, proc: Child) -> Forwarding:
        self.proc = proc
        return self

    def check_terminal(self) -> bool:
        """True once the terminal went away (seen here or on SIGHUP), then let go of.
        A live view asks on every redraw: with SIGHUP ignored no signal says so."""
        if not self.hung_up and hung_up(self.terminals):
            self.hung_up = True
            let_go(self.terminals)
        return self.hung_up

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        if signum == signal.SIGHUP:
            self.check_terminal()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)
        if self.on_signal is not None:
            self.on_signal()

    def __enter__(self) -> Forwarding:
        self._old = {sig: signal.getsignal(sig) for sig in self.SIGNALS}
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            # ignored when ulma started (nohup, `trap '' HUP`): ignored still, as by
            # python, and by the program, which inherited that
            if self._old[sig] != signal.SIG_IGN:
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        if self.received is not None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
