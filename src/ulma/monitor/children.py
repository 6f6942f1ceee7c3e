"""Following the program's child processes (``ulma run``, unless --no-children).

The monitor listens on a Linux abstract Unix socket under an unguessable
name, ``@ulma-children-<pid>-<random>``: an abstract socket has no file, so
nothing can be planted in its place and nothing is left behind, and the
kernel removes it with the monitor.  The name reaches the program through
the ``ULMA_CHILDREN`` environment variable (the bootstrap sets it); every
connection's peer uid is read (SO_PEERCRED) before a byte is, and another
user's is closed at once.

A child connects as soon as it exists: a forked one from inside ``fork()``
(the agent's after-fork handler, see ulma.agent.bootstrap), an exec'd Python
(``subprocess``, multiprocessing's spawn and forkserver) from the
``sitecustomize`` in ulma/agent/children, which the bootstrap puts on
PYTHONPATH.  Protocol, one line each way::

    child -> monitor   CHILD ULMA1 fork|exec <its sys.argv, joined, hex>\\n
    monitor -> child   OK <agent options, encoded> <probe ns> <hexversion>\\n   (+ a fresh session's memfd)

(the probe cost the program's agent measured, which an exec'd child of the
same Python version takes instead of measuring its own: 0 if not known yet)
    child -> monitor   UNPROFILED ULMA1 <reason, hex>\\n   (a Python ulma cannot load into)

The child starts its agent on that session; the monitor drains it with the
others, and once the child has ended (its pidfd says so) reads what it left
in its rings, makes its profile and frees the session.  Every read is bounded
(a line of at most MAX_LINE bytes within REQUEST_SECONDS): a child that stalls
or sends garbage loses its connection, never the monitor.  After the program
ends, children still running are waited for at most GRACE_SECONDS, then
reported with what they had published.
"""

from __future__ import annotations

import _socket
import array
import contextlib
import errno
import os
import select
import sys
import threading
import time
from collections.abc import Callable

from ulma.agent.abstract import listening_socket
from ulma.agent.bootstrap import CHILD_PROTOCOL
from ulma.monitor import eventloop
from ulma.monitor.profile import EdgeStats, FunctionStats, ProcessInfo, Profile

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

    from ulma.monitor.session import Options, Session

PROTOCOL = CHILD_PROTOCOL
ADDRESS_PREFIX = "ulma-children-"
MAX_LINE = 1024
REQUEST_SECONDS = 2.0
GRACE_SECONDS = 2.0  # after the program ended, how long children still running are waited for
MAX_CHILDREN = 4096  # sessions followed in one run; later children run unprofiled, counted
# how often the monitor looks for descendants that never connected (not Python, or a Python
# started with -S, -I or -E): one that lives shorter than this may go unlisted
SCAN_SECONDS = 0.25
MAX_UNFOLLOWED = 1024  # such processes listed at most


class _Child:
    __slots__ = ("command", "finishing", "how", "lock", "pid", "pidfd", "replaced", "session")

    def __init__(self, pid: int, how: str, pidfd: int, session: Session, argv: str) -> None:
        # an exec'd child's command line as ps shows it; a forked one's is its parent's (for the
        # program: ulma's prestarted interpreter): its sys.argv, if it has one
        self.command = (command_of(pid) if how == "exec" or not argv else argv)
        self.pid = pid
        self.how = how
        self.pidfd = pidfd
        self.session = session
        self.replaced = False  # the process exec'd a Python that connected again: this session is over
        # its last figures are being taken (they free its totals): a --jsonl snapshot, which takes
        # its figures so far under `lock`, leaves it out from then on
        self.finishing = False
        self.lock = threading.Lock()


def command_of(pid: int) -> str:
    """The process's command line, as ps shows it (empty if it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read(4096)
    except OSError:
        return ""
    words = raw.rstrip(b"\0").split(b"\0")
    return " ".join(w.decode("utf-8", "replace") for w in words)


def exit_status(pid: int) -> str:
    """How an ended process ended, read from /proc while it is a zombie (its
    parent, the program, has not waited for it yet); "ended" once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return "ended"
    fields = stat[stat.rfind(b")") + 2:].split()
    # fields[0] is field 3 (state); the exit code is field 52
    if len(fields) < 50 or fields[0] != b"Z":
        return "ended"
    code = int(fields[49])
    if code & 0x7F:
        return f"killed by {_signal_name(code & 0x7F)}"
    return f"exit {code >> 8 & 0xFF}"


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Children:
    """The listening socket and the followed children's sessions."""

    def __init__(self, options: Options, probe_ns: Callable[[], float] = lambda: 0.0) -> None:
        self.options = options
        self.probe_ns = probe_ns  # the program's calibrated probe cost (0.0: not known yet)
        self.sock, self.address = listening_socket(ADDRESS_PREFIX, 64, 12, "the children's socket")
        self.lock = threading.Lock()
        self.live: list[_Child] = []
        self.done: list[ProcessInfo] = []
        self.followed = 0  # children given a session
        self.connected: set[int] = set()  # pids that spoke to us (followed, or said why not)
        self.unfollowed: dict[int, str] = {}  # descendants seen in /proc: pid -> command
        # the first look at /proc once the program had time to start any child (at its start it
        # has none: a scan then only costs, on the program's way to its first line)
        self._next_scan = time.monotonic() + SCAN_SECONDS
        self.closed = False
        self.program_pid = 0  # the program itself (set once it runs): never one of its children
        # a session made ahead (in the listener thread, between children): a child that forks
        # does not wait for one to be made (a few ms: its memory, its first calibration)
        self._spare: Session | None = None
        # `finish` writes here to wake the listener at once (a shut-down
        # AF_UNIX listening socket does not wake a thread blocked in accept)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.thread = threading.Thread(target=self._serve, name="ulma-children", daemon=True)
        self.thread.start()

    # -- the listener thread ------------------------------------------------

    def _serve(self) -> None:
        self.sock.setblocking(False)
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        listening: socket.socket | None = None  # self.sock as a socket.socket, once a child came
        while not self.closed:
            if self.program_pid and time.monotonic() >= self._next_scan:
                self._next_scan = time.monotonic() + SCAN_SECONDS
                with self.lock:
                    parents = {self.program_pid, *(c.pid for c in self.live)}
                self.scan(parents)
            # between children, the listener looks at /proc every SCAN_SECONDS
            if not any(fd != self._wake_r for fd, _ in poller.poll(SCAN_SECONDS * 1000)):
                # Between children, a session made ahead for the next one; the first is
                # made here too, once the program runs (not while it starts: the monitor's
                # own start-up would wait for it, on the program's way to its first line).
                if self._spare is None and self.program_pid and not self.closed:
                    with contextlib.suppress(OSError):
                        self._spare = self._session()
                continue
            if listening is None:  # the socket module, imported once a child connects
                import socket

                listening = socket.socket(fileno=self.sock.detach())
                listening.setblocking(False)
                self.sock = listening
            try:
                conn, _ = listening.accept()
                conn.setblocking(True)
            except BlockingIOError:
                continue
            except OSError as exc:
                if self.closed or exc.errno in (errno.EBADF, errno.EINVAL):
                    return
                time.sleep(0.05)  # out of descriptors for now
                continue
            # OSError: the child went away, sent too little or too slowly: it runs unprofiled
            with conn, contextlib.suppress(OSError):
                self._child(conn)
            if self._spare is None and not self.closed:
                with contextlib.suppress(OSError):
                    self._spare = self._session()
        if self._spare is not None:
            self._spare.close()
            self._spare = None

    def _child(self, conn: socket.socket) -> None:
        from ulma.agent.listener import peer_credentials, read_line

        conn.settimeout(REQUEST_SECONDS)
        pid, uid = peer_credentials(conn)
        if uid != os.getuid() or pid == self.program_pid:  # another user's, or not a child
            return
        words = read_line(conn, MAX_LINE).decode("ascii", "replace").split()
        if len(words) == 3 and words[:2] == ["UNPROFILED", PROTOCOL]:
            try:
                reason = bytes.fromhex(words[2]).decode("utf-8", "replace")
            except ValueError:
                reason = "?"
            reason = "".join(c if c.isprintable() else "?" for c in reason)[:200]
            with self.lock:
                if len(self.live) + len(self.done) >= MAX_CHILDREN:
                    return
                self.connected.add(pid)
                self.done.append(ProcessInfo(pid, command_of(pid), "exec", f"unprofiled: {reason}", None))
            return
        if len(words) != 4 or words[:2] != ["CHILD", PROTOCOL] or words[2] not in ("fork", "exec"):
            return
        try:  # sys.argv as the child sees it (a forked child's /proc cmdline is its parent's)
            argv = bytes.fromhex(words[3]).decode("utf-8", "replace") if words[3] != "-" else ""
        except ValueError:
            argv = ""
        argv = "".join(c if c.isprintable() else "?" for c in argv)
        with self.lock:
            if self.closed or len(self.live) + len(self.done) >= MAX_CHILDREN:
                return  # unprofiled (a fork is then in the forked-children count)
        pidfd = os.pidfd_open(pid)  # now, while the child waits for us: the pid is its own
        session, self._spare = self._spare, None
        try:
            if session is None:
                session = self._session()
        except BaseException:
            os.close(pidfd)
            raise
        try:
            reply = f"OK {self.options.agent().encode()} {self.probe_ns()!r} {sys.hexversion}\n".encode()
            fds = array.array("i", [session.fd])
            conn.sendmsg([reply], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds.tobytes())])
        except BaseException:
            os.close(pidfd)
            session.close()
            raise
        session.close_fd()  # the child has it now; our mapping keeps the memory
        child = _Child(pid, words[2], pidfd, session, argv)
        with self.lock:
            for c in self.live:  # it exec'd: its forked self is over (the drain loop finishes it)
                c.replaced = c.replaced or c.pid == pid
            self.live.append(child)
            self.connected.add(pid)
            self.followed += 1

    def _session(self) -> Session:
        from ulma.monitor.session import Session, scope_of

        session = Session(self.options.ring_bytes, self.options.max_threads,
                          loop_block_ms=self.options.loop_block_ms)
        session.scope = scope_of(self.options.only, self.options.exclude)
        return session

    # -- the drain loop -----------------------------------------------------

    def drain(self) -> int:
        """Drains every child's session once; finishes those that ended."""
        with self.lock:
            live = list(self.live)
        n = 0
        for child in live:
            if not child.replaced:
                n += child.session.drain()
        ended = _ended(live)
        for child in live:
            if child.replaced:
                self._finish(child, "exec'd")
            elif child.pidfd in ended:
                self._finish(child, exit_status(child.pid))
        return n

    def scan(self, parents: set[int]) -> None:
        """Notes the descendants of `parents` (and of those already noted)
        that /proc shows now: a child that never connects is listed as
        unprofiled at the end (a program that is not Python).  Runs in the
        listener thread, never in the drain loop."""
        with self.lock:
            parents |= set(self.unfollowed)
        try:
            names = os.listdir("/proc")
        except OSError:
            return
        for name in names:
            if not name.isdigit() or int(name) in parents:
                continue
            try:
                fd = os.open(f"/proc/{name}/stat", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                stat = os.read(fd, 1024)
            except OSError:
                continue
            finally:
                os.close(fd)
            fields = stat[stat.rfind(b")") + 2:].split()
            if len(fields) > 1 and fields[1].isdigit() and int(fields[1]) in parents:
                with self.lock:
                    if len(self.unfollowed) < MAX_UNFOLLOWED:
                        self.unfollowed[int(name)] = command_of(int(name))

    def _finish(self, child: _Child, status: str) -> None:
        """The child ended (or exec'd): what it left, its profile, its session
        freed.  Only the drain loop's thread calls it."""
        with child.lock:
            child.finishing = True
        try:
            session = child.session
            session.drain(postmortem=True)
            session.close_all()
            scale = session.ns_per_tick()
            span = session.program_span_ns(scale)
            wall = span[1] - span[0] if span else 0
            profile = session.profile(wall_ns=wall, scale=scale, final=True)
            if session.counters()["agent_state"] == 0:
                status = f"{status}; its agent did not start"
        except BaseException:
            with self.lock:
                self.live.remove(child)
            raise
        finally:
            child.session.close()
            os.close(child.pidfd)
        with self.lock:  # at once: a snapshot finds it in one list or the other
            self.live.remove(child)
            self.done.append(ProcessInfo(child.pid, child.command, child.how, status, profile))

    def snapshot(self) -> list[ProcessInfo]:
        """The children so far, for --jsonl while the program runs: those that ended with their
        final figures, those running with theirs up to now ("running")."""
        with self.lock:
            rows = list(self.done)
            live = [c for c in self.live if not c.replaced]
        skipped = set()
        for child in live:
            with child.lock:
                if child.finishing:  # ending now: its row is in `done` once it is made
                    skipped.add(child.pid)
                    continue
                session = child.session
                span = session.program_span_ns()
                wall = time.monotonic_ns() - span[0] if span else 0
                profile = session.profile(wall_ns=max(wall, 0), live=True)
            rows.append(ProcessInfo(child.pid, child.command, child.how, "running", profile))
        if skipped:
            with self.lock:
                rows += [r for r in self.done if r.pid in skipped]
        return sorted(rows, key=lambda r: r.pid)

    def finish(self, grace: float = GRACE_SECONDS) -> list[ProcessInfo]:
        """After the program ended: stops listening, waits up to `grace`
        seconds for the children still running, and returns every child's
        row, in the order they ended."""
        self.closed = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self.thread.join(REQUEST_SECONDS + 1)
        with contextlib.suppress(OSError):
            self.sock.close()
        if not self.thread.is_alive():  # else it still polls them; they go with the process
            os.close(self._wake_r)
            os.close(self._wake_w)
        deadline = time.monotonic() + grace
        while True:
            self.drain()
            with self.lock:
                live = list(self.live)
            if not live or time.monotonic() >= deadline:
                break
            _ended(live, min(0.05, max(deadline - time.monotonic(), 0)))
        for child in live:
            self._finish(child, "still running")
        with self.lock:
            unfollowed = [ProcessInfo(pid, command, "exec", "unprofiled: not Python (or a Python ulma "
                                      "does not follow: -S, -I, -E)", None)
                          for pid, command in self.unfollowed.items()
                          if pid not in self.connected and pid != self.program_pid]
            return [*self.done, *unfollowed]


def _ended(children: list[_Child], timeout: float = 0.0) -> set[int]:
    """The pidfds of those children that have ended (waiting up to `timeout` seconds for one)."""
    if not children:
        return set()
    poller = select.poll()  # (select() stops at descriptor 1024)
    for child in children:
        poller.register(child.pidfd, select.POLLIN)
    return {fd for fd, _ in poller.poll(round(timeout * 1000))}


_ADDED = ("calls", "resumes", "self_ns", "total_ns", "cpu_ns", "wait_ns", "overhead_ns", "unmeasured_ns",
          "self_cpu_ns", "self_wait_ns", "self_overhead_ns", "call_overhead_ns", "off_ns", "await_ns",
          "self_await_ns")


def _key(f: FunctionStats) -> tuple[str, str, int, bool]:
    return f.name, f.file, f.line, f.native


def merge_into(total: Profile, part: Profile, pid: int) -> None:
    """Adds `part` (another process's profile) to `total`: the same function
    (same qualified name, file, line) adds up, calls and every time; its edges
    follow; its threads are appended, each with its pid."""
    index = {_key(f): i for i, f in enumerate(total.functions)}
    where: list[int] = []
    for f in part.functions:
        i = index.get(_key(f))
        if i is None:
            i = index[_key(f)] = len(total.functions)
            g = FunctionStats(f.name, f.file, f.line, 0, 0, 0, 0, native=f.native)
            g.wait_blocked_ns, g.wait_runnable_ns = f.wait_blocked_ns, f.wait_runnable_ns
            total.functions.append(g)
            g.off, g.untraced_callees, g.coroutine = f.off, f.untraced_callees, f.coroutine
        else:
            g = total.functions[i]
            for name in ("wait_blocked_ns", "wait_runnable_ns"):
                a, b = getattr(g, name), getattr(f, name)
                setattr(g, name, None if a is None and b is None else (a or 0) + (b or 0))
            g.untraced_callees = g.untraced_callees or f.untraced_callees
            g.coroutine = g.coroutine or f.coroutine
        for name in _ADDED:
            setattr(g, name, getattr(g, name) + getattr(f, name))
        where.append(i)
    edges = {(e.caller, e.callee): n for n, e in enumerate(total.edges)}
    for e in part.edges:
        a, b = where[e.caller], where[e.callee]
        n = edges.get((a, b))
        if n is None:
            edges[a, b] = len(total.edges)
            total.edges.append(EdgeStats(a, b, e.calls, e.resumes, e.total_ns))
        else:
            old = total.edges[n]
            total.edges[n] = EdgeStats(a, b, old.calls + e.calls, old.resumes + e.resumes,
                                       old.total_ns + e.total_ns)
    eventloop.mark_idle(total)
    merge_counters(total, part)
    for t in part.threads:
        t.pid = pid
        total.threads.append(t)
    total.threads_overflow += part.threads_overflow
    total.untraced_events += part.untraced_events
    total.symtab_overflow += part.symtab_overflow
    total.ids_overflow += part.ids_overflow
    total.hooks_displaced += part.hooks_displaced
    total.forked_children += part.forked_children
    total.tasks.extend(t.of_process(pid) for t in part.tasks)
    total.task_totals.add(part.task_totals)


def merge_counters(total: Profile, part: Profile) -> None:
    """The same counter site (name, file, line) in another process adds up: its values are
    counted together, and its last value is the one set last (by CLOCK_MONOTONIC)."""
    import copy  # (only here: it takes a few ms to import, at the end of every run)

    index = {(c.name, c.file, c.line): c for c in total.counters}
    for c in part.counters:
        g = index.get((c.name, c.file, c.line))
        if g is None:
            index[c.name, c.file, c.line] = g = copy.copy(c)
            total.counters.append(g)
            continue
        g.mean = (g.mean * g.samples + c.mean * c.samples) / (g.samples + c.samples)
        g.samples += c.samples
        g.min, g.max = min(g.min, c.min), max(g.max, c.max)
        if c.last_mono_ns >= g.last_mono_ns:
            g.last, g.last_ns, g.last_mono_ns = c.last, c.last_ns, c.last_mono_ns


def merge_rows(profile: Profile, main: ProcessInfo, rows: list[ProcessInfo]) -> None:
    """`profile` (the program's) becomes the merged view: `main` gets a copy of the program's own
    figures, then every row's are added; profile.processes lists them all, main first."""
    import copy

    for t in profile.threads:
        t.pid = main.pid
    profile.tasks = [t.of_process(main.pid) for t in profile.tasks]
    own = copy.copy(profile)  # the program's own figures, before the children's are added
    own.functions = [copy.copy(f) for f in profile.functions]
    own.edges, own.threads, own.tasks = list(profile.edges), list(profile.threads), list(profile.tasks)
    own.counters = [copy.copy(c) for c in profile.counters]
    own.task_totals = profile.task_totals.copy()
    main.profile = own
    profile.processes = [main]
    for row in rows:
        profile.processes.append(row)
        if row.profile is not None:
            merge_into(profile, row.profile, row.pid)


def merge_children(profile: Profile, pid: int, command: str, returncode: int, children: Children) -> None:
    """After the run: every child's row, and their figures added to the
    program's (`profile` becomes the merged view).  The children followed
    are taken out of the forked-children count, which then says
    how many ran unprofiled."""
    rows = children.finish()
    if not rows:  # no child: the report is the program's alone, as it always was
        profile.forked_children = max(profile.forked_children - children.followed, 0)
        return
    status = f"exit {returncode}" if returncode >= 0 else f"killed by {_signal_name(-returncode)}"
    merge_rows(profile, ProcessInfo(pid, command, "main", status, None), sorted(rows, key=lambda r: r.pid))
    # Every process's forks (merged) less the children followed: the forks that ran unprofiled.
    # An exec'd child is subtracted too: the fork() that made it was counted if it was a fork
    # (subprocess on 3.11; 3.12+ mostly uses vfork, which is not: then one unfollowed fork may
    # go uncounted per followed exec'd child)
    profile.forked_children = max(profile.forked_children - children.followed, 0)
