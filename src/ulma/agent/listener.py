"""The idle agent: a program carries it at no cost until a monitor attaches.

``install()`` starts a thread that waits on a Linux abstract Unix socket,
``@ulma-agent-<pid>-<random>``.  An abstract socket has no file: nobody can
plant a directory, a file or a symlink in its place, and the kernel removes
it with the last descriptor, so an agent killed by a signal leaves nothing
behind.  Its random part cannot be guessed, so no other user can take the
name first.  Anyone may connect to an abstract socket: the agent reads the
peer's uid (SO_PEERCRED) before it reads a byte and closes the connection of
another user at once, and the monitor checks the agent's uid and pid the
same way.  A monitor finds the socket of process PID among that process's
own descriptors (/proc/PID/fd, matched by inode in /proc/PID/net/unix), so no
other process can pose as it.

The monitor hands over the session's memfd; the agent hooks the interpreter,
and every thread's first event restates its stack.  When the monitor says
DETACH, or its connection drops, the hooks come off again: while nobody
watches, the program pays nothing.

Protocol, one line each way per step::

    monitor -> agent   ATTACH <protocol> <agent options, encoded>\\n   (+ the memfd, SCM_RIGHTS)
    agent -> monitor   OK <pid>\\n  |  ERR <message>\\n
    monitor -> agent   DETACH\\n     (or the connection closes)
    agent -> monitor   BYE\\n

Every read is bounded: a line of at most MAX_LINE bytes, the request within
REQUEST_SECONDS, every descriptor received closed unless it is the one
session memfd of the request.  Anything else ends that connection, never the
listener.
"""

from __future__ import annotations

import array
import atexit
import contextlib
import os
import selectors
import socket
import struct
import sys
import threading
import time

from ulma import _core
from ulma.agent import AgentOptions, abstract, resolve_engine
from ulma.agent.bootstrap import start_agent

TYPE_CHECKING = False  # no typing import in the profiled program
if TYPE_CHECKING:
    from types import FrameType

PROTOCOL = b"ULMA2"  # 2: agent options (native calls, CPU readings, exclusions)
ADDRESS_PREFIX = "ulma-agent-"
MAX_LINE = 4096  # a request: options with many exclusion patterns
MAX_FDS = 4  # descriptors taken per message; the kernel closes what does not fit
REQUEST_SECONDS = 5.0  # a peer that has not sent its request by then is dropped
INJECTED_SECONDS = 2.0  # the longest an ATTACH waits for the main thread to leave the payload
_ACCEPTING = 0x10000  # __SO_ACCEPTCON in /proc/net/unix's flags: a listening socket
_lock = threading.Lock()
_listener: _Listener | None = None


def peer_credentials(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end (for a connection to a
    listening socket: of the process that made it listen)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return int(pid), int(uid)


def close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def read_message(conn: socket.socket, limit: int = MAX_LINE) -> tuple[bytes, list[int]]:
    """One protocol line, at most `limit` bytes (shorter if the peer stopped
    or closed), and the descriptors that came with it; the caller closes
    them.  Raises OSError (a timeout included): what was received is closed."""
    data = b""
    fds: list[int] = []
    ancillary = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
    try:
        while b"\n" not in data and len(data) < limit:
            msg, anc, _flags, _addr = conn.recvmsg(limit - len(data), ancillary, socket.MSG_CMSG_CLOEXEC)
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    got = array.array("i")
                    got.frombytes(payload[: len(payload) - len(payload) % got.itemsize])
                    fds.extend(got)
            if not msg:
                break
            data += msg
    except BaseException:
        close_all(fds)
        raise
    return data, fds


def read_line(conn: socket.socket, limit: int = MAX_LINE) -> bytes:
    """read_message() for a line that carries no descriptor: any that came are closed."""
    data, fds = read_message(conn, limit)
    close_all(fds)
    return data


def agent_addresses(pid: int) -> list[str]:
    """The abstract addresses ("\\0ulma-agent-...") that process `pid` listens
    on: names in its network namespace's socket table whose inode is one of
    the process's own descriptors.  Raises OSError if its /proc cannot be read."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:[") and link.endswith("]"):
                inodes.add(link[8:-1].encode())
    found: list[str] = []
    prefix = b"@" + ADDRESS_PREFIX.encode()
    with open(f"/proc/{pid}/net/unix", "rb") as table:
        for line in table:  # Num RefCount Protocol Flags Type St Inode Path
            fields = line.split()
            if (len(fields) == 8 and fields[7].startswith(prefix) and fields[6] in inodes
                    and int(fields[3], 16) & _ACCEPTING):
                address = "\0" + fields[7][1:].decode("ascii", "replace")
                if address not in found:
                    found.append(address)
    return found


class _Listener:
    def __init__(self) -> None:
        raw, self.address = abstract.listening_socket(ADDRESS_PREFIX, 16, 8, "the agent's socket")
        self.sock = socket.socket(fileno=raw.detach())
        self.pid = os.getpid()
        self.closed = False
        self.injected: FrameType | None = None  # see _wait_injected_left
        self.thread = threading.Thread(target=self._serve, name="ulma-agent-listener", daemon=True)
        try:
            self.thread.start()
        except BaseException:
            self.sock.close()
            raise
        atexit.register(self.close)

    @property
    def name(self) -> str:
        """The address as tools print it (`ss -x`, /proc/net/unix): '@' for the NUL."""
        return "@" + self.address[1:]

    def close(self) -> None:
        self.closed = True
        _core.agent_stop()
        if os.getpid() == self.pid:  # (a forked child shares the socket: only its own copy goes)
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread in accept()
        with contextlib.suppress(OSError):
            self.sock.close()

    def _serve(self) -> None:
        _core.agent_ignore_thread()  # the listener is ulma, not the program
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                if self.closed:
                    return
                time.sleep(0.1)  # out of descriptors or memory for now: try again
                continue
            with conn:
                try:
                    self._session(conn)
                except OSError:
                    pass  # the peer went away, sent too little, or too slowly
                except Exception as exc:  # a bug of ours: this connection ends, the listener goes on
                    with contextlib.suppress(OSError):
                        conn.sendall(f"ERR the agent failed: {type(exc).__name__}\n".encode())
                finally:
                    _core.agent_stop()  # the monitor is gone: hooks off

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(REQUEST_SECONDS)
        _pid, uid = peer_credentials(conn)
        if uid != os.getuid():
            conn.sendall(b"ERR attaching needs the same user\n")
            return
        line, fds = read_message(conn)
        try:
            words = line.decode("ascii", "replace").split()
            if (not line.endswith(b"\n") or len(words) != 3 or words[0] != "ATTACH"
                    or words[1] != PROTOCOL.decode() or len(fds) != 1):
                conn.sendall(b"ERR bad request (is the monitor another ulma version?)\n")
                return
            try:
                options = AgentOptions.decode(words[2])
                options = options.with_engine(resolve_engine(options.engine))
                self._wait_injected_left()
                start_agent(fds[0], options)
            except (OSError, RuntimeError, ValueError) as exc:
                conn.sendall(f"ERR {exc}\n".encode())
                return
        finally:
            close_all(fds)
        conn.sendall(f"OK {os.getpid()}\n".encode())
        conn.settimeout(None)  # attached for as long as the monitor likes
        self._attached(conn, _pid)
        read_line(conn)  # DETACH, the connection closing, or anything else: all detach
        _core.agent_stop()
        conn.sendall(b"BYE\n")

    def _wait_injected_left(self) -> None:
        """ulma's attach payload (ulma.inject) loaded this agent from a pending
        call in the main thread, and answered from there: hooks turned on
        before the main thread has left that code would restate its frames as
        the program's (seen 3 attaches in 10 on 3.12).  So the first ATTACH
        waits, at most INJECTED_SECONDS, until the payload's outermost frame
        is off the main thread's stack."""
        frame, self.injected = self.injected, None
        if frame is None:
            return
        main = threading.main_thread().ident
        deadline = time.monotonic() + INJECTED_SECONDS
        while time.monotonic() < deadline:
            f = sys._current_frames().get(main) if main is not None else None
            while f is not None and f is not frame:
                f = f.f_back
            if f is None:
                return
            del f
            time.sleep(0.001)

    def _attached(self, conn: socket.socket, monitor: int) -> None:
        """Waits until the monitor says something (or goes); meanwhile another
        monitor that connects is told at once that one is attached, instead of
        waiting in the backlog until it gives up."""
        with selectors.DefaultSelector() as sel:
            sel.register(conn, selectors.EVENT_READ)
            sel.register(self.sock, selectors.EVENT_READ)
            while not self.closed:
                for key, _ in sel.select():
                    if key.fileobj is conn:
                        return
                    self._refuse_busy(monitor)

    def _refuse_busy(self, monitor: int) -> None:
        try:
            other, _ = self.sock.accept()
        except OSError:
            return
        with other:
            other.settimeout(REQUEST_SECONDS)
            with contextlib.suppress(OSError):
                _pid, uid = peer_credentials(other)
                message = (f"ERR already attached (monitor process {monitor}); detach it first\n"
                           if uid == os.getuid() else "ERR attaching needs the same user\n")
                other.sendall(message.encode())


def install(injected: FrameType | None = None) -> str | None:
    """Carries an idle agent in this program; returns the socket's address
    (as `ss -x` shows it) that `ulma attach <pid>` finds.  Idempotent.  If it
    cannot listen, it says so in one line on stderr, returns None, and the
    program goes on unprofiled.  `injected`: the outermost frame of ulma's
    attach payload that calls this (the next ATTACH waits until the main
    thread has left it)."""
    global _listener
    with _lock:
        if _listener is None or _listener.pid != os.getpid():
            try:
                _listener = _Listener()
            except (OSError, RuntimeError) as exc:
                sys.stderr.write(f"ulma: cannot listen for ulma attach ({exc}); "
                                 "the program runs without an agent\n")
                sys.stderr.flush()
                return None
        if injected is not None:
            _listener.injected = injected
        return _listener.name
