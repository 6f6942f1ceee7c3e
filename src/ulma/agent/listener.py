"""The idle agent: a program carries it at no cost until a monitor attaches.

``install()`` starts a thread that waits on a private Unix socket,
``/tmp/ulma-<uid>/agent-<pid>.sock`` (directory 0700, socket 0600).  A
monitor of the same user (checked with SO_PEERCRED) connects and hands over
the session's memfd; the agent hooks the interpreter, and every thread's
first event restates its stack.  When the monitor says DETACH, or its
connection drops, the hooks come off again: while nobody watches, the program
pays nothing.

Protocol, one line each way per step::

    monitor -> agent   ATTACH <protocol> <agent options, encoded>\\n   (+ the memfd, SCM_RIGHTS)
    agent -> monitor   OK <pid>\\n  |  ERR <message>\\n
    monitor -> agent   DETACH\\n     (or the connection closes)
    agent -> monitor   BYE\\n
"""

from __future__ import annotations

import array
import atexit
import contextlib
import os
import socket
import stat
import struct
import threading

from ulma import _core
from ulma.agent import AgentOptions, resolve_engine
from ulma.agent.bootstrap import start_agent

PROTOCOL = b"ULMA2"  # 2: agent options (native calls, CPU readings, exclusions)
_AGENT_DIR = os.path.dirname(os.path.abspath(__file__))
_lock = threading.Lock()
_listener: _Listener | None = None


def socket_dir(uid: int | None = None) -> str:
    return os.path.join("/tmp", f"ulma-{os.getuid() if uid is None else uid}")


def socket_path(pid: int, uid: int | None = None) -> str:
    return os.path.join(socket_dir(uid), f"agent-{pid}.sock")


def private_dir() -> str:
    """Our socket directory, created 0700; refused if someone else owns it."""
    path = socket_dir()
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PermissionError(f"{path} is not a private directory of this user; not listening there")
    return path


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def _read_line(conn: socket.socket, fds: list[int] | None = None) -> bytes:
    """One protocol line (short), collecting any descriptors sent with it."""
    data = b""
    while not data.endswith(b"\n") and len(data) < 256:
        msg, anc, _flags, _addr = conn.recvmsg(256, socket.CMSG_SPACE(4 * array.array("i").itemsize))
        if not msg:
            break
        data += msg
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS and fds is not None:
                got = array.array("i")
                got.frombytes(payload[: len(payload) - len(payload) % got.itemsize])
                fds.extend(got)
    return data


class _Listener:
    def __init__(self) -> None:
        self.path = socket_path(os.getpid())
        private_dir()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # a stale socket of an earlier process with our pid
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            self.sock.bind(self.path)
        finally:
            os.umask(old)
        self.sock.listen(1)
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._serve, name="ulma-agent-listener", daemon=True)
        self.thread.start()
        atexit.register(self.close)

    def close(self) -> None:
        _core.agent_stop()
        if os.getpid() == self.pid:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        with contextlib.suppress(OSError):
            self.sock.close()

    def _serve(self) -> None:
        _core.agent_ignore_thread()  # the listener is ulma, not the program
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed at exit
            with conn, contextlib.suppress(OSError):
                self._session(conn)
            _core.agent_stop()  # the monitor is gone: hooks off

    def _session(self, conn: socket.socket) -> None:
        if _peer_uid(conn) != os.getuid():
            conn.sendall(b"ERR attaching needs the same user\n")
            return
        fds: list[int] = []
        line = _read_line(conn, fds)
        try:
            words = line.decode().split()
            if len(words) != 3 or words[0] != "ATTACH" or words[1] != PROTOCOL.decode() or len(fds) != 1:
                conn.sendall(b"ERR bad request (is the monitor another ulma version?)\n")
                return
            try:
                options = AgentOptions.decode(words[2])
                options = options.with_engine(resolve_engine(options.engine))
                start_agent(fds[0], options)
            except (OSError, RuntimeError, ValueError) as exc:
                conn.sendall(f"ERR {exc}\n".encode())
                return
        finally:
            for fd in fds:
                os.close(fd)
        conn.sendall(f"OK {os.getpid()}\n".encode())
        _read_line(conn)  # DETACH, or the connection closing
        _core.agent_stop()
        conn.sendall(b"BYE\n")


def install() -> str:
    """Carries an idle agent in this program; returns the socket path that
    `ulma attach <pid>` connects to.  Idempotent."""
    global _listener
    with _lock:
        if _listener is None or _listener.pid != os.getpid():
            _listener = _Listener()
        return _listener.path
