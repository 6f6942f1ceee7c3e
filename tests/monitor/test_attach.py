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


# drain_until in the main thread over rings that always hold more (no pause between drains), while
# a signal handler -- as `ulma attach`'s Ctrl-C handler does -- sets the stop event, every 200 us:
# it also clears it the first 2,000 times, so that many signals land anywhere in the loop
SIGNALED_WHILE_DRAINING = """\
import signal, threading
from ulma.monitor.attach import Attachment

class Busy:
    def drain(self, postmortem=False, recorder=None, log=None):
        return 5000

att = object.__new__(Attachment)
att.session, att.log, att.recorder = Busy(), None, None
att.unhook = lambda: None
att.target_alive = lambda: True
stop = threading.Event()
fired = 0
inside = False

def handler(signum, frame):
    global fired, inside
    if inside:  # (a signal within the handler: the handler's own set() must not be interrupted)
        return
    inside = True
    fired += 1
    stop.set()
    if fired < 2000:
        stop.clear()
    inside = False

signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
why = att.drain_until(stop)
signal.setitimer(signal.ITIMER_REAL, 0)
print(why, fired >= 2000)
"""


def test_a_signal_that_stops_the_drain_loop_never_deadlocks_it() -> None:
    """Event.set() in a handler that interrupted Event.wait() on the same event, in the same
    thread, waits forever for the event's lock: `ulma attach` on a busy program once hung after
    Ctrl-C.  The loop must only read the event."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    try:
        done = subprocess.run([sys.executable, "-c", SIGNALED_WHILE_DRAINING], env=env, capture_output=True,
                              text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the drain loop deadlocked in the signal handler")
    assert (done.returncode, done.stdout, done.stderr) == (0, "stopped True\n", "")
