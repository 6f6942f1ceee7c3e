"""Loading ulma's idle agent into a running CPython that was started
without one, so that ``ulma attach PID`` works on any Python program.

The target is made to run fixed text of ulma's (ulma.inject.payload) at a
safe point of its own, in its main thread with the GIL held: a pending call
queued on CPython 3.11-3.13 by ulma's own ptrace injector on x86-64
(ulma.inject.ptrace) or through gdb elsewhere (ulma.inject.gdb),
sys.remote_exec on 3.14+ (ulma.inject.remote, untested).  That text starts the same idle
agent and listener as ``ulma.agent.install()`` and says how it went on an
abstract socket of the attacher's; from there on, attaching is the usual
hot attach (ulma.monitor.attach).  A target that already carries an agent
is never injected again.

A target whose main thread does not run Python code (blocked in a long C
call: time.sleep(3600), a lock, a read) does not run the call: ulma waits a
bounded time and says so.  The call stays queued in the target; when it
runs later it finds ulma's deadline passed (or the report socket gone) and
does nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import time
from pathlib import Path

from ulma.agent import listener
from ulma.monitor.attach import AttachError, agent_addresses

DEFAULT_WAIT_SECONDS = 5.0
MAX_WAIT_SECONDS = 3600.0
SUPPORTED = ((3, 11), (3, 12), (3, 13))
REPORT_PREFIX = "ulma-inject-"
ANSWER_SECONDS = 30.0  # from the target's connection to its answer: imports, a thread started


class InjectError(AttachError):
    """Why ulma could not load its agent into the target, in one line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inject-timeout", type=float, default=DEFAULT_WAIT_SECONDS, metavar="SECONDS",
                        help="for a program without an agent: how long to wait for it to load "
                             f"ulma's (default {DEFAULT_WAIT_SECONDS:g}; needs gdb before Python 3.14 "
                             "except on x86-64)")


def check_arguments(opts: argparse.Namespace) -> None:
    from ulma.cli.errors import UsageError

    wait = opts.inject_timeout
    if not (0 < wait <= MAX_WAIT_SECONDS):  # (nan fails this too)
        raise UsageError(f"--inject-timeout must be more than 0 and at most {MAX_WAIT_SECONDS:g} seconds")


def _version_from_maps(pid: int) -> tuple[int, int] | None:
    """(major, minor) from the libpython or python3.N binary mapped in the
    target; None if neither is (a static, renamed interpreter: gdb asks it)."""
    try:
        with open(f"/proc/{pid}/maps") as maps:
            text = maps.read()
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    found = (re.search(r"/libpython(\d+)\.(\d+)[^/\s]*\.so", text)
             or re.search(r"python(\d+)\.(\d+)[a-z]*$", os.path.basename(exe)))
    return (int(found.group(1)), int(found.group(2))) if found else None


def _fallback() -> tuple[str | None, str]:
    """The directory holding this ulma package, and the suffix of its C
    extension: the target may import them if its interpreter takes that suffix."""
    from ulma import _core

    core = Path(_core.__file__ or "")
    package = Path(__file__).resolve().parent.parent
    suffix = core.name[len("_core"):] if core.name.startswith("_core.") else ""
    return (str(package.parent) if suffix else None), suffix


def _report_socket() -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    address = f"\0{REPORT_PREFIX}{os.getpid()}-{os.urandom(8).hex()}"
    try:
        sock.bind(address)
        sock.listen(4)
    except OSError:
        sock.close()
        raise
    return sock, address


def _wait_answer(sock: socket.socket, pid: int, deadline: float) -> str:
    """The line the target's injected code sends, once it connects; "" if
    it did not by `deadline` (time.monotonic()) or ended first."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not os.path.exists(f"/proc/{pid}"):
            return ""
        sock.settimeout(min(left, 0.1))
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        with conn:
            peer_pid, peer_uid = listener.peer_credentials(conn)
            if peer_pid != pid or peer_uid != os.getuid():
                continue  # not the target: it is not its answer
            conn.settimeout(ANSWER_SECONDS)
            line = b""
            try:
                line = listener.read_line(conn)
                # and its close: then the main thread is all but out of ulma's code, whose
                # frames must not be on its stack when the hooks go on
                while line and conn.recv(64):
                    pass
            except OSError:
                pass
            return line.decode("utf-8", "replace").strip() or "ERR the program closed ulma's connection"


def ensure_agent(pid: int, wait_seconds: float = DEFAULT_WAIT_SECONDS) -> str | None:
    """Loads ulma's idle agent into process `pid` unless it carries one;
    returns what was done, in a line, or None if the agent was there.
    Raises InjectError (one line) when it cannot."""
    try:
        if agent_addresses(pid):  # also: the process is there, is ours, in our network namespace
            return None
    except AttachError:
        try:
            os.stat(f"/proc/{pid}/ns/net")
            os.listdir(f"/proc/{pid}/fd")
        except PermissionError:  # ours, but not dumpable: only CAP_SYS_PTRACE may look inside
            from ulma.inject.ptrace import ptrace_refused

            raise InjectError(ptrace_refused(pid)) from None
        except OSError:
            pass
        raise
    from ulma.inject import gdb, payload, ptrace, remote

    ours = f"{sys.version_info[0]}.{sys.version_info[1]}"
    mapped = _version_from_maps(pid)  # no gdb needed when it says sys.remote_exec can do it
    fallback, suffix = _fallback()  # taken only by an interpreter of its very suffix (version, ABI)
    sock, report = _report_socket()
    with sock:
        start = time.monotonic()
        # the target's deadline: whatever queueing takes, then the wait (CLOCK_MONOTONIC is every process's)
        deadline_ns = time.monotonic_ns() + int((gdb.GDB_SECONDS + wait_seconds) * 1e9)
        own = ptrace.available()
        code = payload.source(deadline_ns, report, fallback, suffix)
        answer = ""

        def wait() -> bool:
            nonlocal answer
            answer = _wait_answer(sock, pid, time.monotonic() + wait_seconds)
            return bool(answer)

        version = mapped
        queued = False
        if mapped is None or not remote.available(mapped):
            try:
                if own:
                    version, queued = ptrace.add_pending_call(pid, code)
                else:
                    version, queued = gdb.add_pending_call(pid, code)
            except (gdb.GdbError, ptrace.PtraceError) as exc:
                raise InjectError(str(exc)) from None
        if version is None:
            raise InjectError(f"process {pid} runs a Python older than 3.11; ulma attaches to CPython 3.11 "
                              "and later")
        where = f"{version[0]}.{version[1]}"
        if queued:
            how = "ptrace" if own else "gdb"
            wait()
        elif remote.available(version):
            how = "sys.remote_exec"
            try:
                remote.run(pid, code, wait)
            except remote.RemoteExecError as exc:
                raise InjectError(str(exc)) from None
        elif version >= (3, 14):
            raise InjectError(f"process {pid} runs Python {where}: ulma loads into it with sys.remote_exec, "
                              f"which needs ulma itself on Python {where} (it runs on {ours})")
        else:
            raise InjectError(f"process {pid} runs Python {where}; ulma attaches to CPython 3.11 and later")
    if not answer:
        if not os.path.exists(f"/proc/{pid}"):
            raise InjectError(f"process {pid} ended before it loaded ulma's agent")
        raise InjectError(
            f"process {pid} did not run ulma's call within {wait_seconds:g} s: its main thread is not "
            "running Python code (blocked in a long C call: a sleep, a lock, I/O?); the call stays "
            "queued and does nothing once ulma has given up (--inject-timeout waits longer)")
    if answer.startswith("OK"):
        took = time.monotonic() - start
        return f"loaded ulma's agent into process {pid} (Python {where}, through {how}, {took:.1f} s)"
    why = answer.removeprefix("ERR").strip()
    if why.startswith("import "):
        why = why.removeprefix("import ")
        if where != ours or fallback is None:
            raise InjectError(f"process {pid} (Python {where}) cannot import ulma ({why}); install ulma in "
                              f"its environment (this ulma runs on Python {ours})")
        raise InjectError(f"process {pid} (Python {where}) cannot import ulma: {why}")
    raise InjectError(f"process {pid} could not start ulma's agent: {why}")
