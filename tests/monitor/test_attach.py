"""The monitor's side of an attach (ulma.monitor.attach) against agents that misbehave: it closes
every descriptor an agent sends, and it talks only to a socket that the target process itself
made listen, as our user."""

from __future__ import annotations

import array
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from ulma.agent import listener
from ulma.monitor.attach import AttachError, Attachment
from ulma.monitor.session import Options

OPTIONS = Options(engine="auto", ring_bytes=1 << 16, max_threads=2)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def agent_address() -> str:
    return f"\0{listener.ADDRESS_PREFIX}{os.getpid()}-test{os.urandom(4).hex()}"


@pytest.fixture
def fake_agent() -> Iterator[socket.socket]:
    """A listening agent socket in this very process (so this process is the target)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(agent_address())
    sock.listen(1)
    yield sock
    sock.close()


def serve_with_descriptors(sock: socket.socket) -> threading.Thread:
    """Answers one attach as an agent would, but sends 4 descriptors with each reply."""
    def serve() -> None:
        conn, _ = sock.accept()
        with conn:
            for reply in (b"OK 1\n", b"BYE\n"):
                _line, fds = listener.read_message(conn)
                listener.close_all(fds)
                extra = [os.open("/dev/null", os.O_RDONLY) for _ in range(4)]
                rights = array.array("i", extra).tobytes()
                conn.sendmsg([reply], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
                listener.close_all(extra)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_descriptors_an_agent_sends_to_the_monitor_are_closed(fake_agent: socket.socket) -> None:
    before = open_fds()
    server = serve_with_descriptors(fake_agent)
    attachment = Attachment(os.getpid(), OPTIONS, timeout=30)
    attachment.detach()
    server.join(30)
    assert open_fds() == before


PASS_LISTENER = """\
import array, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.bind(sys.argv[1].replace("@", "\\0", 1))
sock.listen(1)
with socket.socket(fileno=int(sys.argv[2])) as channel:
    rights = array.array("i", [sock.fileno()]).tobytes()
    channel.sendmsg([b"x\\n"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
    channel.recv(1)
"""


def test_a_listening_socket_the_target_only_holds_is_not_its_agent() -> None:
    """A process that made it listen answers for its own pid (SO_PEERCRED), not for ours."""
    ours, theirs = socket.socketpair()
    helper = subprocess.Popen([sys.executable, "-c", PASS_LISTENER, "@" + agent_address()[1:],
                               str(theirs.fileno())], pass_fds=[theirs.fileno()])
    theirs.close()
    ours.settimeout(30)
    try:
        _data, fds = listener.read_message(ours)
        assert len(fds) == 1 and listener.agent_addresses(os.getpid())  # it is found among ours ...
        with pytest.raises(AttachError, match="no ulma agent listening"):  # ... and refused
            Attachment(os.getpid(), OPTIONS, timeout=30)
        listener.close_all(fds)
    finally:
        ours.close()
        helper.wait(30)
