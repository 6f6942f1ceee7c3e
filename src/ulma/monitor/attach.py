"""Attaching to a program that carries an idle agent (see ulma.agent.listener).

The monitor creates the session, hands its memfd over the agent's socket and
drains while attached; detaching turns the program's hooks off again and
leaves it running."""

from __future__ import annotations

import array
import contextlib
import os
import select
import socket
import threading
import time

from ulma.agent import listener
from ulma.monitor.profile import Profile
from ulma.monitor.session import Options, Recorder, Session, end_record, scope_of
from ulma.monitor.streams import LogWriter, Streams

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ulma.monitor.live import Health


class AttachError(Exception):
    """Why we cannot attach, in one line."""


def check_target(pid: int) -> list[str]:
    """The addresses the agent of `pid` may listen on, after checking the
    process is there, is ours, and shares our network namespace (where its
    abstract socket lives)."""
    addresses = agent_addresses(pid)
    if not addresses:
        raise AttachError(f"process {pid} has no ulma agent (start it with `python -m ulma.agent` "
                          "or call ulma.agent.install() in the program)")
    return addresses


def agent_addresses(pid: int) -> list[str]:
    """check_target(), but an empty list when process `pid` has no agent."""
    try:
        st = os.stat(f"/proc/{pid}")
    except FileNotFoundError:
        raise AttachError(f"no process {pid}") from None
    if st.st_uid != os.getuid():
        raise AttachError(f"process {pid} belongs to another user; ulma attaches only to your own")
    try:
        if os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino:
            raise AttachError(f"process {pid} is in another network namespace; run ulma attach inside it")
        addresses = listener.agent_addresses(pid)
    except FileNotFoundError:
        raise AttachError(f"no process {pid}") from None
    except OSError as exc:
        raise AttachError(f"cannot look at process {pid}: {exc.strerror}") from None
    return addresses


def _connect(pid: int, addresses: list[str], timeout: float) -> socket.socket:
    """A connection to the agent that process `pid` itself runs, as our user
    (SO_PEERCRED: a socket the process only inherited answers for another pid)."""
    why = f"process {pid} has no ulma agent listening"
    for address in addresses:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            peer_pid, peer_uid = listener.peer_credentials(sock)
        except OSError as exc:
            sock.close()
            why = f"cannot talk to the agent of process {pid}: {exc}"
            continue
        if peer_uid == os.getuid() and peer_pid == pid:
            return sock
        sock.close()
        if peer_uid != os.getuid():
            why = f"the socket of process {pid} is another user's; refusing to use it"
    raise AttachError(why)


# How long the agent may take to answer ATTACH.  Its listener thread needs the
# GIL after each system call (accept, receive, send, the probe's calibration
# between them): a program that keeps the GIL a second at a time
# (sys.setswitchinterval(1), tests/programs/plain_target.py --hold-gil) makes
# every one of them wait up to that long -- 6 to 8 s seen for one ATTACH, which
# a 10 s limit failed now and then on a loaded machine.
ANSWER_SECONDS = 30.0


class Attachment:
    """A monitor attached to a running program (same interface as Run for views)."""

    def __init__(self, pid: int, options: Options, *, timeout: float = ANSWER_SECONDS) -> None:
        addresses = check_target(pid)
        self.pid = pid
        self.options = options
        self.streams_said: list[str] = []  # --log, --jsonl: lines for stderr after detaching
        self.streams: Streams | None = None
        if options.log_path or options.jsonl_path:  # a file we cannot write stops us before attaching
            try:
                self.streams = Streams(options.log_path, options.jsonl_path)
            except OSError as exc:
                raise AttachError(exc.strerror or str(exc)) from None
        self.log: LogWriter | None = self.streams.log if self.streams else None
        self.recorder: Recorder | None = None  # -o
        self.trace_error: str | None = None
        try:
            self.sock = _connect(pid, addresses, timeout)
        except BaseException:
            if self.streams is not None:
                self.streams.abandon()
            raise
        try:
            self.session = Session(options.ring_bytes, options.max_threads,
                                   loop_block_ms=options.loop_block_ms)
        except BaseException:
            self.sock.close()
            if self.streams is not None:
                self.streams.abandon()
            raise
        self.session.scope = scope_of(options.only, options.exclude)
        if options.trace_path:  # -o: opened before the agent starts, so nothing drained is left out
            try:            # (its engine, not known yet, goes in the END record)
                self.recorder = Recorder(options.trace_path, self.session, "auto")
            except OSError as exc:
                self._abandon()
                raise AttachError(f"cannot write {options.trace_path}: {exc.strerror or exc}") from None
        if self.streams is not None:  # the drain feeds the log from the first event on
            self.streams.start_log(self.session, pid)
        try:
            request = f"ATTACH {listener.PROTOCOL.decode()} {options.agent().encode()}\n".encode()
            fds = array.array("i", [self.session.fd])
            # BrokenPipeError: the agent answered and closed before reading (busy): read its answer
            with contextlib.suppress(BrokenPipeError):
                self.sock.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
            self._drain_until_answer(timeout)
            reply = listener.read_line(self.sock).decode("utf-8", "replace").strip()
        except OSError as exc:
            self._abandon()
            raise AttachError(f"cannot talk to the agent of process {pid}: {exc}") from None
        if not reply.startswith("OK"):
            self._abandon()
            message = reply.removeprefix("ERR ").strip() or "the agent closed the connection"
            message = "".join(c if c.isprintable() else "?" for c in message)[:300]
            raise AttachError(f"process {pid} refused: {message}")
        self.session.close_fd()
        if options.budget or options.burst:  # the dial (ulma.monitor.dial), as `ulma run` has it
            from ulma.monitor.dial import Burst, Dial

            if options.budget:
                self.session.dial = Dial(options.budget, self.session.control, options.dial_seconds)
            if options.burst:
                self.session.burst = Burst(*options.burst, self.session.control)
        self._unhooked = False
        self._program_ended = False
        self.start_ns = time.monotonic_ns()
        self.end_ns: int | None = None
        self.sock.settimeout(None)
        if self.streams is not None:
            self.streams.start(self.session, pid, self._stream_snapshot)

    def _drain(self, postmortem: bool = False) -> int:
        return self.session.drain(postmortem=postmortem, recorder=self.recorder, log=self.log)

    def _drain_until_answer(self, timeout: float) -> None:
        """Drains until the agent's answer can be read (or its connection
        closed); TimeoutError after `timeout` seconds.  The agent's hooks go on
        before it answers ATTACH (it then times its probe, in its own thread,
        which a busy program holds the GIL against: 10-170 ms were seen on a
        loaded machine), and stay on until it answers DETACH; a busy program
        fills a ring in tens of milliseconds, so the rings are drained
        meanwhile, as in any other wait of the monitor."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            drained = self._drain()
            # a busy ring is drained again at once, as in drain_until
            wait_ms = 0 if drained > 4096 else max(1, int(self.options.poll_seconds * 1000))
            if poller.poll(wait_ms):  # the answer, or a hang-up or an error: read_line() says which
                return
            if time.monotonic() >= deadline:
                raise TimeoutError("timed out")

    def _stream_snapshot(self) -> tuple[Profile, Health]:
        from ulma.monitor.live import health_of

        return self.live_profile(), health_of(self.session, self.end_ns is not None, None)

    def _abandon(self) -> None:
        self.sock.close()
        if self.recorder is not None:
            self.recorder.abandon()
        self.session.close()
        if self.streams is not None:
            self.streams.abandon()

    def elapsed_ns(self, scale: float | None = None) -> int:
        """The program's time under the hooks, on its own clock: from when they
        went on (the agent's start, its calibration done) until they came off
        at our DETACH -- or until its last event, if it ended while attached --
        or until now, while attached.  `scale`: ns per tick (default: the
        calibration now).  The handshake before and the drain after are not
        the program's time."""
        k = scale if scale is not None else self.session.ns_per_tick()
        on = self.session.agent_info()["program_start_ticks"]
        start = self.session.mono_ns(on, k) if on else self.start_ns
        if self.end_ns is None:
            return max(time.monotonic_ns() - start, 0)
        span = self.session.program_span_ns(k)
        last = span[1] if span else self.end_ns
        # events written while our DETACH was on its way are the program's time too
        end = last if self._program_ended else max(self.end_ns, last)
        return max(end - start, 0)

    def target_alive(self) -> bool:
        return os.path.exists(f"/proc/{self.pid}")

    def drain_until(self, stop: threading.Event, duration: float | None = None) -> str:
        """Drains until `stop` is set, `duration` seconds passed, or the program
        ended; says which.  The program's hooks are off when it returns: nobody
        drains after this, so the rings must not go on filling."""
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while True:
                drained = self._drain()
                if drained <= 4096:  # a busy ring is drained again at once, as in Run.drain_until_exit
                    time.sleep(self.options.poll_seconds)
                # read, never waited on: `ulma attach` sets `stop` from a signal handler, which runs
                # in this thread; had the signal come inside stop.wait(), which holds the event's
                # own lock at times, the handler's stop.set() would wait for that lock forever
                if stop.is_set():
                    return "stopped"
                if deadline is not None and time.monotonic() >= deadline:
                    return "duration"
                if not self.target_alive():
                    return "exited"
        finally:
            self.unhook()

    def unhook(self) -> None:
        """Asks the agent to take its hooks off; once it answers, every ring
        is flushed.  The program goes on."""
        if self._unhooked:
            return
        self._unhooked = True
        self.end_ns = time.monotonic_ns()
        try:
            self.sock.settimeout(5.0)
            self.sock.sendall(b"DETACH\n")
            self._drain_until_answer(5.0)
            # no BYE: the program ended first (its time ends at its last event)
            self._program_ended = listener.read_line(self.sock) != b"BYE\n"
        except OSError:
            self._program_ended = True  # what it wrote is in the session anyway

    def live_profile(self, thread: int | None = None) -> Profile:
        return self.session.profile(wall_ns=self.elapsed_ns(), live=True, thread=thread)

    def clear(self) -> None:
        self.session.clear()

    def detach(self) -> Profile:
        """Hooks off in the program (it keeps running), then the final profile."""
        self.unhook()
        self.sock.close()
        if self.streams is not None:
            self.streams.stop()  # no snapshot from here on
        self._drain(postmortem=True)
        self.session.close_all()
        scale = self.session.ns_per_tick()  # one calibration for the run time and the totals
        wall_ns = self.elapsed_ns(scale)
        profile = self.session.profile(wall_ns=wall_ns, scale=scale)
        if self.recorder is not None:
            self.recorder.close(end_record(self.session, profile, wall_ns, scale, None, self.pid, self.log))
            self.trace_error = self.recorder.error
        self.session.close()
        if self.streams is not None:
            self.streams_said = self.streams.close(profile)
        return profile
