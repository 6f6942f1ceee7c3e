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
inherits it; the session then takes that descriptor (``take``).
"""

from __future__ import annotations

import os
import subprocess
import sys

# ulma.agent.bootstrap's entry for it (named here: the monitor imports the
# agent's modules, and _core, only once this interpreter has started)
BOOT_EARLY_CODE = "from ulma.agent.bootstrap import main_early; main_early()"
# options after which `ulma run` runs no program in a prestarted interpreter
_NOT_PRESTARTED = frozenset({"-h", "--help", "--live", "--live-exit", "--output-pane", "--wait-attach"})


class Prestarted:
    __slots__ = ("_pipe", "proc", "session_fd")

    def __init__(self) -> None:
        self.session_fd = os.memfd_create("ulma-session", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        read, self._pipe = os.pipe()
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", BOOT_EARLY_CODE, str(read),
                                          str(self.session_fd)], pass_fds=(read, self.session_fd))
        except BaseException:
            for fd in (self._pipe, self.session_fd):
                os.close(fd)
            raise
        finally:
            os.close(read)

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


def start() -> None:
    """Starts the program's interpreter; its pipe closes with this process.
    If it cannot be started now (no descriptors left), `Run` starts the
    program as usual, and says why if that fails too."""
    global _prestarted
    if _prestarted is None:
        try:
            _prestarted = Prestarted()
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
