"""Running a program under ulma: the session, the child, the drain loop.

The session is a name-free memfd: nothing appears in /dev/shm, and the kernel
frees it when the last process holding it ends, however that happens (even
``kill -9`` of every ulma process).  The monitor -- this process -- maps it,
hands it to the program as an inherited descriptor, and drains the rings
while the program runs, so a live view sees the program as it is now.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from ulma import _core
from ulma.agent import bootstrap
from ulma.monitor.profile import Profile, Symbol, ThreadInfo, build_profile

DEFAULT_RING_BYTES = 8 << 20
DEFAULT_MAX_THREADS = 256
ENGINE_NAMES = {1: "monitoring", 2: "pep523"}


@dataclass(frozen=True, slots=True)
class Target:
    """What to run: a script path or a module name, with its arguments."""

    kind: str  # "script" or "module"
    name: str
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Options:
    engine: str
    ring_bytes: int = DEFAULT_RING_BYTES
    max_threads: int = DEFAULT_MAX_THREADS
    empty_hooks: bool = False
    poll_seconds: float = 0.002


class Session:
    """A shared-memory session seen from the monitor."""

    def __init__(self, ring_bytes: int, max_threads: int) -> None:
        self.fd = os.memfd_create("ulma-session", os.MFD_CLOEXEC)
        try:
            self.core = _core.Session(self.fd, ring_bytes, max_threads)
        except BaseException:
            os.close(self.fd)
            raise
        self.symbols: dict[int, Symbol] = {}
        counters = self.core.counters()
        self.start_ticks: int = counters["start_ticks"]
        self.start_mono_ns: int = counters["start_mono_ns"]
        self.clock: str = counters["clock"]

    def close_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def drain(self, postmortem: bool = False) -> int:
        n: int = self.core.drain(postmortem=postmortem)
        for sid, kind, flags, name, file, line in self.core.symbols():
            self.symbols[sid] = Symbol(sid, kind, flags, name, file, line)
        return n

    def ns_per_tick(self) -> float:
        """Calibrates the tick clock against CLOCK_MONOTONIC over the whole
        session so far; the longer it ran, the better the figure."""
        ticks, mono = self.core.clock()
        dt = ticks - self.start_ticks
        return (mono - self.start_mono_ns) / dt if dt > 0 else 1.0

    def profile(self, *, wall_ns: int, live: bool = False, thread: int | None = None) -> Profile:
        functions, edges = self.core.snapshot(live=live, thread=thread)
        counters = self.core.counters()
        scale = self.ns_per_tick()
        profile = build_profile(
            self.symbols, functions, edges, scale,
            python=sys.version.split()[0], wall_ns=wall_ns,
            engine=ENGINE_NAMES.get(counters["engine"], "none"), clock=self.clock,
        )
        profile.threads = [
            ThreadInfo(slot=t["slot"], os_tid=t["os_tid"], events=t["events"], dropped=t["dropped"],
                       lost_ns=round(t["lost_ticks"] * scale), unmatched=t["unmatched"])
            for t in self.core.threads()
        ]
        profile.threads_overflow = counters["threads_overflow"]
        profile.symtab_overflow = counters["symtab_overflow"]
        return profile

    def close(self) -> None:
        self.close_fd()
        self.core.close()


@dataclass(slots=True)
class RunResult:
    returncode: int
    profile: Profile
    started: bool  # False: the program never ran (bad module, unreadable script)


def _child_command(target: Target) -> list[str]:
    return [sys.executable, "-c", bootstrap.BOOT_CODE, target.kind, target.name, *target.args]


def _forward(proc: subprocess.Popen[bytes]) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)
    return handler


def run(target: Target, options: Options,
        on_tick: Callable[[Session, float], None] | None = None) -> RunResult:
    """Runs the target with the agent on and drains it until it exits.

    Ctrl-C reaches the program (it is in our process group) and ulma waits
    for it, so the report still comes; SIGTERM/SIGHUP are passed on."""
    session = Session(options.ring_bytes, options.max_threads)
    env = dict(os.environ)
    env[bootstrap.ENV_FD] = str(session.fd)
    env[bootstrap.ENV_ENGINE] = options.engine
    env[bootstrap.ENV_EMPTY] = "1" if options.empty_hooks else "0"
    start_ns = time.monotonic_ns()
    proc = subprocess.Popen(_child_command(target), env=env, pass_fds=(session.fd,))
    session.close_fd()  # the child has its own; the mapping keeps the memory
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _forward(proc))
    signal.signal(signal.SIGHUP, _forward(proc))
    try:
        returncode = _drain_until_exit(proc, session, options, on_tick)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    wall_ns = time.monotonic_ns() - start_ns
    # Whatever the program wrote before it ended -- even by a crash, with
    # events it never published -- is still in the shared memory.
    session.drain(postmortem=True)
    session.core.close_all()
    profile = session.profile(wall_ns=wall_ns)
    started = session.core.counters()["agent_state"] != 0
    session.close()
    return RunResult(returncode, profile, started)


def _drain_until_exit(proc: subprocess.Popen[bytes], session: Session, options: Options,
                      on_tick: Callable[[Session, float], None] | None) -> int:
    pidfd = os.pidfd_open(proc.pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    try:
        while True:
            drained = session.drain()
            if on_tick is not None:
                on_tick(session, time.monotonic())
            # A busy ring is drained again at once; otherwise sleep until the
            # next poll or the program's exit, whichever comes first.
            wait_ms = 0 if drained > 4096 else int(options.poll_seconds * 1000) or 1
            if poller.poll(wait_ms) and proc.poll() is not None:
                return proc.returncode
            if proc.poll() is not None:
                return proc.returncode
    finally:
        os.close(pidfd)
