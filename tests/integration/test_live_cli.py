"""`ulma run` and the live view: chosen only on a terminal, forced with --live/--no-live, and in a real
pseudo-terminal: the program's output is passed through after the view, q leaves the program running
and still profiled, Ctrl-C reaches the program, and the report follows as without the view."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import subprocess_env

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
HOT = PROGRAMS_DIR / "report_hot.py"
LOOP = PROGRAMS_DIR / "live_target.py"
DEADLINE = 60.0
REPORT = re.compile(r"ulma: \d+ functions, top \d+ by self time")
ALT_SCREEN_ON, ALT_SCREEN_OFF = "\x1b[?1049h", "\x1b[?1049l"
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]


def test_no_live_prints_the_plain_report(run_python: RunFn, run_ulma: RunFn,
                                         describe: Callable[[Completed], str]) -> None:
    plain = run_python([str(HOT)], cwd=PROGRAMS_DIR)
    result = run_ulma(["run", "--no-live", str(HOT)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    assert result.stdout == plain.stdout, describe(result)
    assert REPORT.search(result.stderr) and "\x1b[" not in result.stderr, describe(result)


def test_without_a_terminal_the_live_view_is_not_chosen(run_python: RunFn, run_ulma: RunFn,
                                                        describe: Callable[[Completed], str]) -> None:
    plain = run_python([str(HOT)], cwd=PROGRAMS_DIR)
    result = run_ulma(["run", str(HOT)], cwd=PROGRAMS_DIR)  # stdout and stderr are pipes here
    assert result.returncode == 0, describe(result)
    assert result.stdout == plain.stdout, describe(result)
    assert REPORT.search(result.stderr) and "\x1b[" not in result.stderr, describe(result)


def test_live_without_a_terminal_is_refused_in_one_line(run_ulma: RunFn,
                                                        describe: Callable[[Completed], str]) -> None:
    result = run_ulma(["run", "--live", str(HOT)], cwd=PROGRAMS_DIR)
    assert result.returncode == 2, describe(result)
    assert result.stderr.count("\n") == 1 and "--live needs a terminal" in result.stderr, describe(result)


@dataclass
class Terminal:
    """`python -m ulma ARGS` on a pseudo-terminal of its own (its controlling terminal, so Ctrl-C
    typed there is a SIGINT for its foreground process group, as in a shell)."""

    args: list[str]
    pid: int = 0
    fd: int = -1
    seen: str = ""
    returncode: int | None = None
    closed: bool = field(default=False)

    def __enter__(self) -> Terminal:
        env = subprocess_env({"TERM": "xterm-256color", "COLUMNS": "150", "LINES": "45"})
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec at once (this process has threads)
            try:
                os.chdir(PROGRAMS_DIR)
                os.execve(sys.executable, [sys.executable, "-m", "ulma", *self.args], env)
            finally:
                os._exit(127)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 45, 150, 0, 0))
        return self

    def read_until(self, text: str) -> None:
        """Reads the terminal until `text` has been shown; fails after DEADLINE."""
        deadline = time.monotonic() + DEADLINE
        while text not in self.seen:
            if self.closed or time.monotonic() > deadline:
                pytest.fail(f"never saw {text!r} on the terminal; it showed:\n{self.seen[-3000:]!r}")
            self._read(deadline - time.monotonic())

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not ready:
            return
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: every process holding the terminal has ended
            data = b""
        if not data:
            self.closed = True
        self.seen += data.decode(errors="replace")

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def wait(self) -> int:
        """Reads to the end and returns the exit code."""
        deadline = time.monotonic() + DEADLINE
        while not self.closed and time.monotonic() < deadline:
            self._read(deadline - time.monotonic())
        pid, status = os.waitpid(self.pid, 0) if self.closed else (0, 0)
        if pid == 0:
            pytest.fail(f"ulma did not end; the terminal showed:\n{self.seen[-3000:]!r}")
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def __exit__(self, *exc: object) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
        os.close(self.fd)


def after_view(seen: str) -> str:
    """What the terminal showed once the view had closed."""
    assert ALT_SCREEN_ON in seen, "the live view never started"
    return ESCAPES.sub("", seen.rsplit(ALT_SCREEN_OFF, 1)[1].replace("\r\n", "\n"))


def test_on_a_terminal_the_view_runs_and_the_output_and_report_follow_it() -> None:
    with Terminal(["run", "--live-exit", "--json", os.devnull, str(HOT)]) as term:
        term.read_until("ulma ")  # the view's header
        assert term.wait() == 0
        tail = after_view(term.seen)
    report = REPORT.search(tail)
    assert report and tail.index("5\n5050\n") < report.start(), tail
    assert "hot  report_hot.py:4" in tail and "dropped 0" in tail, tail


def test_q_leaves_the_program_running_and_profiled_until_ctrl_c_ends_it() -> None:
    with Terminal(["run", str(LOOP), "120"]) as term:
        term.read_until("live_target.py:13")  # hot() is in the table
        term.type(b"q")
        term.read_until("still runs and is profiled")
        term.type(b"\x03")  # the terminal's own Ctrl-C, now that the view is closed
        assert term.wait() == 130
        tail = after_view(term.seen)
    assert "ready\n" in tail and "KeyboardInterrupt" in tail, tail
    assert "hot  live_target.py:13" in tail and REPORT.search(tail), tail


def test_ctrl_c_in_the_view_interrupts_the_program_and_q_then_shows_the_report() -> None:
    with Terminal(["run", str(LOOP), "120"]) as term:
        term.read_until("live_target.py:13")
        term.type(b"\x03")
        term.read_until("killed by SIGINT")
        term.type(b"q")
        assert term.wait() == 130
        tail = after_view(term.seen)
    assert "still runs" not in tail and "KeyboardInterrupt" in tail and REPORT.search(tail), tail

