"""The idle agent's socket against hostile neighbours and hostile peers: the program always runs,
the listener survives whatever it is sent, the session memfd cannot be shrunk under the program,
no descriptor sent to it stays open, and nothing is left behind when the program is killed."""

from __future__ import annotations

import array
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import ulma
from tests.conftest import AgentTarget, agent_target, missing_dependency, subprocess_env, wait_for_agent

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
TARGET = PROGRAMS_DIR / "attach_target.py"
PROTOCOL = "ULMA2"

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]


@pytest.fixture
def target(tmp_path: Path) -> Iterator[AgentTarget]:
    with agent_target(TARGET, tmp_path) as t:
        yield t


def attach_ticks(run_ulma: RunFn, pid: int, out: Path) -> int:
    """A real `ulma attach` of 0.3 s: how many tick() calls it saw."""
    result = run_ulma(["attach", str(pid), "--duration", "0.3", "--no-report", "--json", str(out)])
    assert result.returncode == 0, result.stderr
    functions = json.loads(out.read_text())["functions"]
    return sum(f["calls"] for f in functions if f["name"] == "tick")


def finished_cleanly(target: AgentTarget) -> None:
    """The program ends as it would without ulma: its output, its exit code, nothing on stderr."""
    code, out, err = target.finish()
    assert (code, err) == (3, ""), (code, err)
    assert out.startswith("ticks=")


def agent_options() -> str:
    engine = "monitoring" if sys.version_info >= (3, 12) else "pep523"
    return f"1,{engine},0,100,0"


def send_fds(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())])


def request(target: AgentTarget, memfd: int) -> socket.socket:
    """Connects as a monitor would and hands `memfd` over; returns the connection."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(target.address)
    send_fds(sock, f"ATTACH {PROTOCOL} {agent_options()}\n".encode(), [memfd])
    return sock


# -- a planted directory --------------------------------------------------------------------------

PLANTS = {
    "world-writable": "mkdir -m 0777 /tmp/ulma-$(id -u)",
    "another user's": "mkdir -m 0700 /tmp/ulma-$(id -u) && chown 65534:65534 /tmp/ulma-$(id -u)",
    "a symlink": "mkdir -m 0777 /tmp/elsewhere && ln -s /tmp/elsewhere /tmp/ulma-$(id -u)",
}
INSTALLS = ("import runpy, sys, ulma.agent; ulma.agent.install(); sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")


def private_tmp_possible() -> bool:
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                          capture_output=True, check=False).returncode == 0


def in_private_tmp(plant: str, command: list[str]) -> list[str]:
    """`command` in a mount namespace of its own, whose /tmp is a fresh tmpfs holding what another
    user planted there (so the test plants nothing in the real /tmp).  What the program needs from
    the real /tmp (CI's venv lives there) is bound back in place, through the real /tmp bound on
    /mnt first (all within the namespace: the machine's mounts are untouched)."""
    def q(part: str) -> str:
        return "'" + part.replace("'", "'\\''") + "'"

    needed = [sys.prefix, str(PROGRAMS_DIR), str(Path(ulma.__file__).parent),
              *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    under_tmp = sorted({os.path.realpath(p) for p in needed if p and os.path.realpath(p).startswith("/tmp/")})
    steps = ["mount --bind /tmp /mnt", "mount -t tmpfs tmpfs /tmp"]
    steps += [f"mkdir -p {q(p)} && mount --bind {q('/mnt' + p[4:])} {q(p)}" for p in under_tmp]
    quoted = " ".join(q(part) for part in command)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f"{' && '.join(steps)} && {plant} && exec {quoted}"]


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a program a private /tmp (unshare --mount)")
@pytest.mark.parametrize("plant", sorted(PLANTS))
@pytest.mark.parametrize("launcher", ["python -m ulma.agent", "ulma.agent.install()"])
def test_a_planted_socket_directory_neither_stops_the_program_nor_attaching(
        plant: str, launcher: str, run_ulma: RunFn, tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        missing_dependency("needs unshare (Debian package util-linux)")
    if not private_tmp_possible():
        pytest.skip("cannot make a mount namespace here (unshare --mount needs CAP_SYS_ADMIN)")
    start = ["-m", "ulma.agent"] if launcher.startswith("python") else ["-c", INSTALLS]
    # a program that ends at once: it runs, as under plain python
    hello = in_private_tmp(PLANTS[plant], [sys.executable, *start, str(PROGRAMS_DIR / "says_hello.py")])
    done = subprocess.run(hello, capture_output=True, text=True, timeout=60, env=subprocess_env(),
                          cwd=PROGRAMS_DIR, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "hello\n", "")
    # a program that goes on: it can be attached, and ends with its own output and exit code
    stop = "/tmp/stop"  # in its private /tmp
    proc = subprocess.Popen(in_private_tmp(PLANTS[plant], [sys.executable, *start, str(TARGET), stop]),
                            cwd=PROGRAMS_DIR, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for_agent(proc)
        assert attach_ticks(run_ulma, proc.pid, tmp_path / "a.json") > 0
        Path(f"/proc/{proc.pid}/root{stop}").touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, err) == (3, "") and out.startswith("ticks=")


def test_a_program_that_cannot_listen_says_so_in_one_line_and_runs_unprofiled() -> None:
    # no descriptor left for the socket: RLIMIT_NOFILE at the lowest free descriptor number
    code = ("import os, resource, ulma.agent, ulma.agent.listener; fd = os.dup(0); os.close(fd); "
            "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (fd, hard)); "
            "print(ulma.agent.install()); print('ran')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=subprocess_env(), check=False)
    assert (done.returncode, done.stdout) == (0, "None\nran\n")
    line, = done.stderr.splitlines()
    assert line.startswith("ulma: cannot listen for ulma attach (") and "runs without an agent" in line


# -- what a peer sends --------------------------------------------------------------------------------

BAD_REQUESTS = {
    "a byte that is not UTF-8": b"ATTACH \xff x\n",
    "an oversized line": b"ATTACH " + b"x" * 200_000 + b"\n",
    "a truncated request": b"ATTACH ULMA2 1,",
    "no descriptor": f"ATTACH {PROTOCOL} {agent_options()}\n".encode(),
}


def test_bad_requests_and_a_silent_peer_end_their_connection_and_the_listener_survives(
        target: AgentTarget, run_ulma: RunFn, tmp_path: Path) -> None:
    for i, (what, data) in enumerate(BAD_REQUESTS.items()):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(target.address)
            try:
                sock.sendall(data)
                if what == "a truncated request":
                    sock.shutdown(socket.SHUT_WR)
                reply = sock.recv(4096)
            except ConnectionResetError:
                reply = b"(reset)"  # it closed with our oversized line unread
            assert not reply.startswith(b"OK"), what
        # a real attach works right after
        assert attach_ticks(run_ulma, target.proc.pid, tmp_path / f"{i}.json") > 0, what
    # a peer that connects and says nothing is dropped: a real attach gets through meanwhile
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(target.address)
        assert attach_ticks(run_ulma, target.proc.pid, tmp_path / "after-silent.json") > 0
        silent.settimeout(30)
        assert silent.recv(1) == b""  # closed by the agent, not left waiting for ever
    finished_cleanly(target)


# -- the session memfd ----------------------------------------------------------------------------------

def test_a_session_memfd_that_could_shrink_is_refused_so_the_program_never_gets_sigbus(
        target: AgentTarget, run_ulma: RunFn, tmp_path: Path) -> None:
    from ulma import _core

    # unsealed (made without MFD_ALLOW_SEALING: the monitor's seals could not take)
    unsealed = os.memfd_create("hostile", os.MFD_CLOEXEC)
    session = _core.Session(unsealed, 1 << 16, 4)
    with request(target, unsealed) as sock:
        reply = sock.recv(4096)
        os.ftruncate(unsealed, 0)  # what a hostile monitor does once attached
        time.sleep(0.5)
        assert target.proc.poll() is None, target.proc.communicate()  # not killed by SIGBUS
    assert reply.startswith(b"ERR") and b"sealed" in reply, reply
    session.close()
    os.close(unsealed)
    # sealed, but smaller than its header says: a real session's header in 8 KiB
    real = os.memfd_create("real", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    real_session = _core.Session(real, 1 << 16, 4)
    small = os.memfd_create("small", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.pwrite(small, os.pread(real, 8192, 0), 0)
    import fcntl
    fcntl.fcntl(small, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    with request(target, small) as sock:
        reply = sock.recv(4096)
        time.sleep(0.5)
        assert target.proc.poll() is None, target.proc.communicate()
    assert reply.startswith(b"ERR") and b"more than its memfd holds" in reply, reply
    real_session.close()
    os.close(real)
    os.close(small)
    assert attach_ticks(run_ulma, target.proc.pid, tmp_path / "after.json") > 0
    finished_cleanly(target)


# -- descriptors --------------------------------------------------------------------------------------

def test_descriptors_sent_outside_the_handshake_are_all_closed(target: AgentTarget) -> None:
    from ulma.monitor.session import Session

    before = target.fd_count()
    null = os.open("/dev/null", os.O_RDONLY)
    try:
        # with a request that is refused ...
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(target.address)
            send_fds(sock, f"ATTACH {PROTOCOL} {agent_options()}\n".encode(), [null] * 4)
            assert sock.recv(4096).startswith(b"ERR")
        # ... and while attached, 60 messages of 4 each, then DETACH with 16 more (more than the agent
        # takes in one message: the kernel must drop the rest, not install them)
        session = Session(1 << 16, 4)
        with request(target, session.fd) as sock:
            assert sock.recv(4096).startswith(b"OK")
            for _ in range(60):
                send_fds(sock, b"x", [null] * 4)
            send_fds(sock, b"DETACH\n", [null] * 16)
            assert sock.recv(4096) == b"BYE\n"
        session.close_fd()
        session.core.close()
    finally:
        os.close(null)
    deadline = time.monotonic() + 10
    while target.fd_count() != before and time.monotonic() < deadline:
        time.sleep(0.05)  # the agent closes the last ones after its reply
    assert target.fd_count() == before, target.descriptors()
    finished_cleanly(target)


# -- what a killed agent leaves ----------------------------------------------------------------------

def sockets_named_after(pid: int) -> list[str]:
    """Socket files whose name holds `pid`, two levels down in the temporary and runtime directories."""
    found = []
    tops = {"/tmp", os.environ.get("TMPDIR", "/tmp"), os.environ.get("XDG_RUNTIME_DIR", "/tmp")}
    for top in tops:
        level = [top]
        for _depth in range(2):
            below = []
            for directory in level:
                try:
                    entries = list(os.scandir(directory))
                except OSError:
                    continue
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISSOCK(st.st_mode) and str(pid) in entry.name:
                        found.append(entry.path)
                    elif stat.S_ISDIR(st.st_mode) and entry.name.startswith("ulma"):
                        below.append(entry.path)
            level = below
    return found


def test_an_agent_killed_by_a_signal_leaves_no_socket_behind(tmp_path: Path, run_ulma: RunFn) -> None:
    with agent_target(TARGET, mkdir(tmp_path / "a")) as a:
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait()
        killed = a.proc.pid
    with agent_target(TARGET, mkdir(tmp_path / "b")) as b:
        assert sockets_named_after(killed) == []
        assert attach_ticks(run_ulma, b.proc.pid, tmp_path / "b.json") > 0
        finished_cleanly(b)
    assert sockets_named_after(b.proc.pid) == []


def mkdir(path: Path) -> Path:
    path.mkdir()
    return path


# -- another user ------------------------------------------------------------------------------------

HOSTILE = """\
import array, os, socket, sys, time
address = "\\0" + sys.argv[1]  # (an abstract address: a NUL, then its name)
os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
fake = os.memfd_create("fake")
os.ftruncate(fake, 1 << 20)
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
    s.settimeout(30)
    s.connect(address)
    try:
        s.sendmsg([sys.argv[2].encode() + b"\\n"],
                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fake]).tobytes())])
    except BrokenPipeError:
        pass  # the agent closed at once, without reading: its answer is there all the same
    print(s.recv(4096).decode().strip(), flush=True)
silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
silent.connect(address)
print("silent", flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user (uid 65534)")
def test_another_user_can_neither_attach_nor_keep_the_owner_from_attaching(
        target: AgentTarget, run_ulma: RunFn, tmp_path: Path) -> None:
    hostile = subprocess.Popen([sys.executable, "-c", HOSTILE, target.address.removeprefix("\0"),
                                f"ATTACH {PROTOCOL} {agent_options()}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=subprocess_env())
    try:
        assert hostile.stdout is not None and hostile.stderr is not None
        line = hostile.stdout.readline().strip()
        assert line == "ERR attaching needs the same user", hostile.stderr.read()
        assert hostile.stdout.readline().strip() == "silent"
        assert attach_ticks(run_ulma, target.proc.pid, tmp_path / "owner.json") > 0
    finally:
        hostile.kill()
        hostile.wait()
    finished_cleanly(target)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a program a network namespace of its own")
def test_attach_to_a_program_in_another_network_namespace_says_why_in_one_line(
        run_ulma: RunFn, tmp_path: Path) -> None:
    if subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot make a network namespace here (unshare --net needs CAP_SYS_ADMIN)")
    stop = tmp_path / "stop"
    command = ["unshare", "--net", sys.executable, "-m", "ulma.agent", str(TARGET), str(stop)]
    proc = subprocess.Popen(command, cwd=PROGRAMS_DIR, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for_agent(proc)  # (its socket table is read through its own /proc/PID/net)
        result = run_ulma(["attach", str(proc.pid), "--duration", "0.1", "--no-report"])
        stop.touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert result.returncode != 0
    assert result.stderr == (f"ulma: error: process {proc.pid} is in another network namespace; "
                             "run ulma attach inside it\n")
    assert (proc.returncode, err) == (3, "") and out.startswith("ticks=")
