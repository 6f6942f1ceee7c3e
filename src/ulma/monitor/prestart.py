"""The program's interpreter, started before ulma's command line is imported.

A Python interpreter takes as long to start as the monitor takes to import
its command line (argparse), read the options and make the session.  So
`ulma run` starts the program's interpreter first: it loads ulma's bootstrap
and waits on a pipe, while the monitor does all that on another core.  Once
the session is made, ``Run`` hands it the options and the program, and the
bootstrap goes on exactly as if it had been started then (the same
interpreter, flags, environment and descriptors: the pipe is closed before
the program's first line).  When ulma does not run a program after all (a
usage error, ``--help``, the live view, whose program needs other streams),
the pipe is closed unused and the interpreter ends without a word.

The session's memfd is made here, before the interpreter starts, so that it
inherits it; the session then takes that descriptor (``take``), and starts
from a clock pair read here (its first calibration's 2 ms are over by then).

It is started with ``os.posix_spawn``, not ``subprocess``: importing
subprocess (and the locale, re, enum and threading modules it brings) would
delay this start by as long again as the rest of ulma's imports before it.
As ``subprocess.Popen`` does, the interpreter gets SIGPIPE and SIGXFSZ back
at their defaults; unlike it, descriptors the monitor was given open
(inheritable) are not closed, so the program has them as under plain python.
"""

from __future__ import annotations

import os
import sys

# the signals' numbers without the signal module (which imports enum): _signal is built in,
# loaded at start-up already (typeshed has no stub for it)
from _signal import SIGKILL, SIGPIPE, SIGTERM, SIGXFSZ  # type: ignore[import-not-found]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Protocol

    class Child(Protocol):
        """What the monitor uses of the program's process: a Popen, or a Spawned."""

        pid: int

        @property
        def returncode(self) -> int | None: ...

        @property
        def stdin(self) -> IO[bytes] | None: ...

        @property
        def stdout(self) -> IO[bytes] | None: ...

        @property
        def stderr(self) -> IO[bytes] | None: ...

        def poll(self) -> int | None: ...

        def wait(self) -> int: ...

        def send_signal(self, sig: int) -> None: ...

        def terminate(self) -> None: ...

        def kill(self) -> None: ...

# ulma.agent.bootstrap's entry for it (named here: the monitor imports the
# agent's modules, and _core, only once this interpreter has started)
BOOT_EARLY_CODE = "from ulma.agent.bootstrap import main_early; main_early()"
# options after which `ulma run` runs no program in a prestarted interpreter
_NOT_PRESTARTED = frozenset({"-h", "--help", "--live", "--live-exit", "--output-pane", "--wait-attach"})
# options that change what the probe's calibration measures (or turn it off): with none of them,
# the prestarted interpreter calibrates while it waits (ulma.agent.bootstrap.calibrate_ahead)
_NOT_AHEAD = ("--engine", "--native-calls", "--cpu-interval", "--exclude", "--only", "--id-limit",
              "--empty-hooks", "--recording-floor")


class Spawned:
    """A child process started by posix_spawn, with the part of Popen's
    interface the monitor uses; returncode is -N if signal N ended it.  Its
    standard streams are the monitor's (no pipes)."""

    __slots__ = ("pid", "returncode")
    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def _reap(self, flags: int) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, flags)
            except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored): what Popen says then
                pid, status = self.pid, 0
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self) -> int | None:
        return self._reap(os.WNOHANG)

    def wait(self) -> int:
        code = self._reap(0)
        assert code is not None
        return code

    def send_signal(self, sig: int) -> None:
        """As Popen's: a child already reaped is not signalled (its pid may be another's now)."""
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(SIGTERM)

    def kill(self) -> None:
        self.send_signal(SIGKILL)


class Prestarted:
    __slots__ = ("_pipe", "clock_start", "proc", "session_fd")

    def __init__(self, ahead: bool = True) -> None:
        """`ahead`: the interpreter calibrates the probe while it waits (a guess
        that the options will be the default ones; a wrong one costs time only)."""
        self.session_fd = os.memfd_create("ulma-session", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        read, self._pipe = os.pipe()
        try:
            # inheritable only while the interpreter is spawned
            os.set_inheritable(read, True)
            os.set_inheritable(self.session_fd, True)
            argv = [sys.executable, "-c", BOOT_EARLY_CODE, str(read), str(self.session_fd),
                    "1" if ahead else "0"]
            self.proc = Spawned(os.posix_spawn(sys.executable, argv, os.environ,
                                               setsigdef=(SIGPIPE, SIGXFSZ)))
            os.set_inheritable(self.session_fd, False)
        except BaseException:
            for fd in (self._pipe, self.session_fd):
                os.close(fd)
            raise
        finally:
            os.close(read)
        # the session's start: its first calibration (2 ms) runs from here, over by the time it is made
        from ulma import _core

        self.clock_start: tuple[int, int, int] = _core.clock_pair()

    def go(self, fields: list[str]) -> bool:
        """Hands the bootstrap what to run (see bootstrap.main_early); False
        if the interpreter is gone (then the caller starts another)."""
        data = "\0".join(fields).encode("utf-8", "surrogateescape")
        try:
            while data:
                data = data[os.write(self._pipe, data):]
            return True
        except OSError:
            return False
        finally:
            os.close(self._pipe)
            self._pipe = -1

    def discard(self) -> None:
        """Not needed: the interpreter ends (it reads an empty pipe) and is waited for."""
        if self._pipe >= 0:
            os.close(self._pipe)
            self._pipe = -1
        if self.session_fd >= 0:
            os.close(self.session_fd)
            self.session_fd = -1
        self.proc.wait()


_prestarted: Prestarted | None = None


def wanted(run_args: list[str]) -> bool:
    """Whether `ulma run run_args` will run its program as a prestarted
    interpreter can: no help, no idle agent, no live view (by option, or by
    default on a terminal).  A wrong guess only costs a few milliseconds
    either way."""
    if any(arg in _NOT_PRESTARTED for arg in run_args):
        return False
    on_terminal = all(s is not None and s.isatty() for s in (sys.stdin, sys.stdout, sys.stderr))
    return "--no-live" in run_args or not on_terminal


def start(run_args: list[str] | None = None) -> None:
    """Starts the program's interpreter; its pipe closes with this process.
    If it cannot be started now (no descriptors left), `Run` starts the
    program as usual, and says why if that fails too.  `run_args`: what
    follows `ulma run`, whether to calibrate ahead is guessed from it."""
    global _prestarted
    if _prestarted is None:
        ahead = not any(arg.startswith(_NOT_AHEAD) for arg in run_args or ())
        try:
            _prestarted = Prestarted(ahead)
        except OSError:
            _prestarted = None


def take() -> Prestarted | None:
    """The prestarted interpreter, once; its session_fd is the caller's from now on."""
    global _prestarted
    taken, _prestarted = _prestarted, None
    return taken


def discard() -> None:
    """Ends the prestarted interpreter if nothing took it."""
    taken = take()
    if taken is not None:
        taken.discard()
