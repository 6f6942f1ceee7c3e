"""The monitor's side of ``--to HOST:PORT``: the session streamed to ``ulma collect``.

The drain hands each drain's new symbols and (``--to-send events``) a copy of
its records to ``Streamer.take``, which only appends them to a queue bounded in
bytes (``QUEUE_BYTES``, what is queued plus what was sent and not yet
acknowledged): the drain never waits on the network.  When the queue is full the
records of a drain are not streamed -- counted, said at the end and in the
aggregates the collector shows -- and the stream is aggregates only until the
queue has emptied to half; symbols are always kept.  A thread of its own runs an
asyncio loop that connects, authenticates (ulma.fleet.wire), answers the
collector's clock pings, sends what is queued through one zstd stream, and after
a network break connects again and sends what the collector did not acknowledge.
Every ``AGGREGATE_SECONDS`` a snapshot of the profile (the fields of
``--jsonl``'s objects) replaces the one not yet sent.  The local report and
``-o`` keep everything whatever happens to the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zstandard

from ulma import __version__
from ulma.fleet import wire
from ulma.format import records

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ulma.monitor.live import Health
    from ulma.monitor.profile import Profile
    from ulma.monitor.session import Session

QUEUE_BYTES = 64 << 20  # queued + unacknowledged at most; past it a drain's records are not streamed
AGGREGATE_SECONDS = 0.5  # between two aggregates (as --jsonl)
CONNECT_SECONDS = 5.0
SILENCE_SECONDS = 4.0  # the collector pings every second: a connection silent this long is dead
FINISH_SECONDS = 10.0  # at the end, what is queued may take this long to reach the collector
RETRY_SECONDS = (0.2, 2.0)  # first and longest wait between two connection attempts
SEND_BATCH = 4 << 20  # bytes sent before the loop looks at pings and acknowledgements again
MODES = ("aggregates", "events")
# tests only: added to every time this side sends (a host whose clock is this far ahead)
ENV_TEST_OFFSET = "ULMA_FLEET_TEST_CLOCK_OFFSET_NS"
# tests only: this side's clock runs this many ppm fast (from when ulma started): every time and
# every ns per tick it sends (a host whose clock drifts)
ENV_TEST_DRIFT = "ULMA_FLEET_TEST_CLOCK_DRIFT_PPM"
ENV_TEST_QUEUE = "ULMA_FLEET_TEST_QUEUE_BYTES"  # tests only: a smaller queue, to fill it


def now_ns() -> int:
    """This host's CLOCK_MONOTONIC, as the session's times are (plus a test's offset and drift)."""
    return host_ns(time.monotonic_ns())


def host_ns(mono_ns: int) -> int:
    """A CLOCK_MONOTONIC time as this side says it (a test's clock: offset and drift)."""
    if TEST_DRIFT:
        return mono_ns + TEST_OFFSET + round((mono_ns - TEST_EPOCH) * TEST_DRIFT * 1e-6)
    return mono_ns + TEST_OFFSET


def host_scale(ns_per_tick: float) -> float:
    """ns per tick as this side says it (a test's drifting clock: that much longer)."""
    return ns_per_tick * (1 + TEST_DRIFT * 1e-6)


def _test_number(name: str) -> float:
    try:
        return float(os.environ.get(name, "0"))
    except ValueError:
        return 0


TEST_OFFSET = int(_test_number(ENV_TEST_OFFSET))
TEST_DRIFT = _test_number(ENV_TEST_DRIFT)
TEST_EPOCH = time.monotonic_ns()


@dataclass(slots=True)
class Message:
    """A message that must reach the collector: symbols, a drain's records, the finish."""

    seq: int
    kind: bytes
    body: bytes | list[tuple[int, bytes]]  # events: (thread, records) of one drain
    size: int
    ns_per_tick: float = 0.0
    events: int = 0

    def payload(self) -> bytes:
        head = wire.SEQ.pack(self.seq)
        if self.kind != wire.EVENTS:
            assert isinstance(self.body, bytes)
            return head + self.body
        assert isinstance(self.body, list)
        parts = [wire.EVENTS_HEAD.pack(self.seq, self.ns_per_tick, len(self.body))]
        parts += [wire.EVENTS_CHUNK.pack(thread, len(data)) for thread, data in self.body]
        parts += [data for _, data in self.body]
        return b"".join(parts)


class Streamer:
    """One session's stream; ``take`` from the drain, the rest in a thread of its own."""

    def __init__(self, address: tuple[str, int], token: bytes, mode: str,
                 tls: ssl.SSLContext | None = None) -> None:
        self.address = address
        self.where = f"{address[0]}:{address[1]}"
        self.token = token
        self.mode = mode
        self.tls = tls
        self.events = mode == "events"  # the drain copies its records for us (Session.drain)
        self.limit = int(os.environ.get(ENV_TEST_QUEUE, "0") or 0) or QUEUE_BYTES
        self.stream_id = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._pending: deque[Message] = deque()  # not sent yet
        self._unacked: deque[Message] = deque()  # sent on this connection, not acknowledged
        self._bytes = 0  # of both
        self._seq = 0
        self._aggregate: bytes | None = None  # the latest, not sent yet
        self._dropping = False
        self.dropped_events = 0  # records not streamed: the queue was full
        self.taken_events = 0
        self.acked_events = 0
        self.wire_bytes = 0  # compressed, as sent (resent bytes included)
        self.raw_bytes = 0
        self.connections = 0
        self.last_error: str | None = None
        self.refused: str | None = None
        self._finish_seq: int | None = None
        self._finished = threading.Event()  # the collector acknowledged the finish
        self._closing = False
        self._stop_snapshots = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._snapshots: threading.Thread | None = None
        self._session: Session | None = None
        self._hello: dict[str, Any] = {}
        self._pid = 0
        self._agg_seq = 0
        self.last_scale = 0.0  # ns per tick at the last drain

    # -- the monitor's side

    def start(self, session: Session, snapshot: Callable[[], tuple[Profile, Health]], pid: int,
              command: str) -> None:
        """Before the first drain of `session` (or as early as can be): from now on it is streamed."""
        counters = session.counters()
        info = session.agent_info()
        self._session = session
        self._pid = pid
        self._hello = {
            "v": 1, "stream": self.stream_id, "host": socket.gethostname(), "pid": pid,
            "command": command, "mode": self.mode,
            "meta": {"ulma": __version__, "python": sys.version.split()[0], "host": socket.gethostname(),
                     "engine": "auto", "clock": session.clock, "monitor_pid": os.getpid(),
                     "start_ticks": counters["start_ticks"],
                     "start_mono_ns": host_ns(counters["start_mono_ns"]),
                     "start_real_ns": counters["start_real_ns"], "ring_events": counters["ring_events"],
                     "ns_per_tick": host_scale(info["ns_per_tick_hint"]), "scope": list(session.scope),
                     "loop_block_ms": session.blocks.limit_ns / 1e6},
        }
        session.tap = self
        self._thread = threading.Thread(target=self._run_loop, name="ulma-fleet-sender", daemon=True)
        self._thread.start()
        self._snapshots = threading.Thread(target=self._snapshot_loop, args=(snapshot,),
                                           name="ulma-fleet-aggregates", daemon=True)
        self._snapshots.start()

    def take(self, symbols: list[tuple[int, int, int, str, str, int]],
             chunks: list[tuple[int, bytes]]) -> None:
        """From the drain: never waits."""
        session = self._session
        scale = self.last_scale = host_scale(session.ns_per_tick()) if session is not None else 0.0
        if not symbols and not chunks:
            return
        size = sum(len(data) for _, data in chunks)
        n = size // records.EVENT_BYTES
        with self._lock:
            if symbols:
                from ulma.format import trace

                body = b"".join(trace.pack_symbols([trace.SymbolDef(*s) for s in symbols]))
                self._queue(wire.SYMBOLS, body, len(body))
            if chunks and self.events:
                self.taken_events += n
                if self._dropping and self._bytes <= self.limit // 2:
                    self._dropping = False
                if self._dropping or self._bytes + size > self.limit:
                    self._dropping = True
                    self.dropped_events += n
                else:
                    msg = self._queue(wire.EVENTS, chunks, size)
                    msg.ns_per_tick, msg.events = scale, n
        self._notify()

    def _queue(self, kind: bytes, body: bytes | list[tuple[int, bytes]], size: int) -> Message:
        self._seq += 1
        msg = Message(self._seq, kind, body, size)
        self._pending.append(msg)
        self._bytes += size
        return msg

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop ended
                loop.call_soon_threadsafe(wake.set)

    def _snapshot_loop(self, snapshot: Callable[[], tuple[Profile, Health]]) -> None:
        while not self._stop_snapshots.wait(AGGREGATE_SECONDS):
            try:
                profile, health = snapshot()
            except Exception:  # the session went away under us: the finish says the end
                return
            self._set_aggregate(profile, health, final=False)

    def _aggregate_object(self, profile: Profile, health: Health | None, final: bool) -> dict[str, Any]:
        from ulma.monitor.streams import jsonl_object

        obj = jsonl_object(self._agg_seq, profile, health, None, None, pid=self._pid, final=final)
        self._agg_seq += 1
        obj["stream"] = {"mode": self.mode, "events_taken": self.taken_events,
                         "events_dropped": self.dropped_events}
        return obj

    def _set_aggregate(self, profile: Profile, health: Health | None, final: bool) -> None:
        data = json.dumps(self._aggregate_object(profile, health, final), separators=(",", ":")).encode()
        with self._lock:
            self._aggregate = data
        self._notify()

    def stop_snapshots(self) -> None:
        """No more snapshots of the session (before its final figures are taken)."""
        self._stop_snapshots.set()
        if self._snapshots is not None:
            self._snapshots.join()

    def finish(self, profile: Profile, end: dict[str, Any]) -> list[str]:
        """After the last drain: the final figures sent, and what the user must hear (lines for
        stderr, without the "ulma: ")."""
        self.stop_snapshots()
        if self._session is not None:
            self._session.tap = None
        body = json.dumps({"aggregate": self._aggregate_object(profile, None, True), "end": end},
                          separators=(",", ":")).encode()
        with self._lock:
            self._finish_seq = self._queue(wire.FINISH, body, len(body)).seq
            self._closing = True
        self._notify()
        # a collector never reached: one more try, not the whole wait
        self._finished.wait(FINISH_SECONDS if self.connections else RETRY_SECONDS[1])
        with self._lock:
            self._closing = True
        self._notify()
        if self._thread is not None:
            self._thread.join(2.0)
        return self.said()

    def said(self) -> list[str]:
        if self.refused is not None:
            return [f"the stream to {self.where} failed: {self.refused}"]
        if not self.connections:
            return [f"the stream to {self.where} failed: {self.last_error or 'no connection'}; "
                    "nothing was sent (the local report has everything)"]
        lines = []
        if not self._finished.is_set():
            with self._lock:
                left = sum(m.events for m in (*self._unacked, *self._pending))
            lines.append(f"the stream to {self.where} was cut ({self.last_error or 'no answer'}): "
                         f"{left} events and the final figures did not reach the collector "
                         "(the local report has everything)")
        if self.dropped_events:
            lines.append(f"the stream to {self.where} fell behind: {self.dropped_events} of "
                         f"{self.taken_events} events were not streamed (the figures were; the local "
                         "report and -o have everything)")
        what = f"{self.acked_events} events and " if self.events else ""  # what was sent, in any case
        lines.append(f"streamed {what}the figures to {self.where}: {self.wire_bytes / 1024:.0f} KiB "
                     f"sent ({self.raw_bytes / 1024:.0f} KiB before compression), "
                     f"{self.connections} connection{'s' if self.connections > 1 else ''}")
        return lines

    # -- the sender's thread

    def _run_loop(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            self._loop = None
            loop.close()

    def _done(self) -> bool:
        return self._finished.is_set() or self.refused is not None

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        delay = RETRY_SECONDS[0]
        deadline: float | None = None
        while not self._done():
            if self._closing:
                deadline = deadline or time.monotonic() + (FINISH_SECONDS if self.connections
                                                           else RETRY_SECONDS[1])
                if time.monotonic() >= deadline:
                    return
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.address, ssl=self.tls), CONNECT_SECONDS)
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                self.last_error = _why(exc)
                await self._sleep(delay)
                delay = min(delay * 2, RETRY_SECONDS[1])
                continue
            try:
                await self._connection(reader, writer)
                delay = RETRY_SECONDS[0]
            except wire.WireError as exc:
                self.refused = str(exc)
            except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError,
                    zstandard.ZstdError) as exc:
                self.last_error = _why(exc)
                await self._sleep(delay)
            finally:
                writer.close()
                with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._wake is not None
        await asyncio.wait_for(wire.client_handshake(reader, writer, self.token), CONNECT_SECONDS)
        compress = zstandard.ZstdCompressor(level=1).compressobj()

        def send(kind: bytes, payload: bytes) -> None:
            data = wire.frame(kind, payload)
            out = compress.compress(data) + compress.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            self.raw_bytes += len(data)
            self.wire_bytes += len(out)
            writer.write(out)

        send(wire.HELLO, json.dumps(self._hello).encode())
        await writer.drain()
        kind, body = await asyncio.wait_for(wire.read_frame(reader), CONNECT_SECONDS)
        if kind != wire.RESUME:
            raise wire.WireError("the collector did not answer the hello")
        self.connections += 1
        self._acked(wire.SEQ.unpack(body)[0])
        with self._lock:  # what the last connection left unacknowledged goes first
            self._pending.extendleft(reversed(self._unacked))
            self._unacked.clear()
        heard = [time.monotonic()]

        async def listen() -> None:
            while True:
                kind, body = await wire.read_frame(reader)
                heard[0] = time.monotonic()
                if kind == wire.PING:
                    t2 = now_ns()
                    (t1,) = wire.TIME.unpack(body)
                    send(wire.PONG, wire.PONG_BODY.pack(t1, t2, now_ns()))
                elif kind == wire.ACK:
                    self._acked(wire.SEQ.unpack(body)[0])
                    if self._finished.is_set():
                        self._notify()

        listener = asyncio.ensure_future(listen())
        try:
            while not self._finished.is_set():
                if listener.done():
                    listener.result()  # its error ends this connection
                    raise EOFError("the collector closed the connection")
                if time.monotonic() - heard[0] > SILENCE_SECONDS:
                    raise TimeoutError(f"no word from the collector for {SILENCE_SECONDS:.0f} s")
                self._wake.clear()
                sent = 0
                with self._lock:
                    aggregate, self._aggregate = self._aggregate, None
                if aggregate is not None:
                    send(wire.AGGREGATE, aggregate)
                while sent < SEND_BATCH:
                    with self._lock:
                        if not self._pending:
                            break
                        msg = self._pending.popleft()
                        self._unacked.append(msg)
                    payload = msg.payload()
                    send(msg.kind, payload)
                    sent += len(payload)
                await asyncio.wait_for(writer.drain(), SILENCE_SECONDS)
                if sent < SEND_BATCH:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), 0.25)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener

    def _acked(self, seq: int) -> None:
        with self._lock:
            while self._unacked and self._unacked[0].seq <= seq:
                msg = self._unacked.popleft()
                self._bytes -= msg.size
                self.acked_events += msg.events
            while self._pending and self._pending[0].seq <= seq:  # (a resume after a lost ack)
                msg = self._pending.popleft()
                self._bytes -= msg.size
                self.acked_events += msg.events
            if self._finish_seq is not None and seq >= self._finish_seq:
                self._finished.set()


def _why(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the connection closed"
    if isinstance(exc, TimeoutError):
        return str(exc) or "timed out"
    if isinstance(exc, ssl.SSLError):  # (its errno is OpenSSL's, not the OS's: say its reason)
        return f"TLS: {getattr(exc, 'verify_message', None) or exc.reason or exc}"
    if isinstance(exc, OSError):  # (asyncio's connect errors carry the errno, not its words)
        return os.strerror(exc.errno) if exc.errno else exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


def end_of(profile: Profile, scale: float, returncode: int | None, pid: int) -> dict[str, Any]:
    """The END record of the collector's trace of this session (ulma.format.schema.End)."""
    return {"wall_ns": profile.wall_ns, "ns_per_tick": scale, "engine": profile.engine,
            **({"returncode": returncode} if returncode is not None else {}),
            "program_pid": pid,
            "dropped": {str(t.thread): t.dropped for t in profile.threads},
            "os_tid": {str(t.thread): t.os_tid for t in profile.threads}}
