"""``ulma collect``: the sessions that monitors stream (``--to``), per host and process and merged.

One asyncio server on the address it is told.  Each connection is
authenticated first (ulma.fleet.wire); then its first frame, HELLO, names the
session (a stream id the monitor chose), which a later connection of the same
monitor takes over after a network break (``RESUME`` says what was received).
The collector pings each connection at once a few times, then every second,
and keeps each host's clock offset (ulma.fleet.clocks).  It prints a table
every ``TABLE_SECONDS``; when it stops (SIGINT, SIGTERM, --duration) it writes
``--json`` and closes the merged trace (``-o``, ulma.fleet.merged).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, cast

import zstandard

from ulma.fleet import wire
from ulma.fleet.clocks import ClockEstimate

TABLE_SECONDS = 2.0
PING_SECONDS = 1.0
FIRST_PINGS = 8  # at 20 ms, as a connection starts
HANDSHAKE_SECONDS = 10.0
SILENCE_SECONDS = 10.0
JSON_VERSION = 1
# what adds up across processes in the merged functions (the rest is the first's or None)
SUMMED = ("calls", "resumes", "self_ns", "total_ns", "cpu_ns", "wait_ns", "wait_blocked_ns",
          "wait_runnable_ns", "overhead_ns", "unmeasured_ns", "self_cpu_ns", "self_wait_ns",
          "self_overhead_ns", "call_overhead_ns", "await_ns", "self_await_ns")


# what one read of a connection may decompress to: zstd makes ulma's frames 5 to 30 times smaller;
# a stream that makes far more of a read is a decompression bomb, refused before it takes memory
INFLATE_RATIO = 1024
INFLATE_SLACK = 1 << 20


class _TakenOver(Exception):
    """A newer connection took the session over."""


class Inflow:
    """One connection's decompressed side: its frames handed on as they come out of zstd (no read's
    whole output is ever held), and at most INFLATE_RATIO times a read's bytes (plus INFLATE_SLACK)
    out of one read, else WireError."""

    def __init__(self, handle: Callable[[bytes, bytes], None]) -> None:
        self.frames = wire.FrameBuffer()
        self.handle = handle
        self.budget = 0
        self.unpack = zstandard.ZstdDecompressor().stream_writer(cast("IO[bytes]", self), write_size=1 << 16,
                                                                 closefd=False)

    def feed(self, data: bytes) -> None:
        self.budget = INFLATE_RATIO * len(data) + INFLATE_SLACK
        self.unpack.write(data)

    def write(self, data: bytes) -> int:
        """zstd's output, a piece at a time."""
        self.budget -= len(data)
        if self.budget < 0:
            raise wire.WireError(f"a read decompressed to more than {INFLATE_RATIO} times its size "
                                 "(a decompression bomb)")
        for kind, body in self.frames.feed(data):
            self.handle(kind, body)
        return len(data)

    def flush(self) -> None:
        pass


@dataclass
class Source:
    """One monitor's session, over however many connections."""

    stream: str
    host: str
    address: str
    pid: int
    command: str
    mode: str
    meta: dict[str, Any]
    seq: int = 0  # the last message received in order
    events: int = 0  # records received
    aggregate: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    finished: bool = False
    connections: int = 0
    connected: bool = False
    clock: ClockEstimate = field(default_factory=ClockEstimate)
    writer: Any = None  # its trace (ulma.fleet.merged.MemberWriter), with -o and events
    conn: asyncio.StreamWriter | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.host, self.pid)


class Collector:
    def __init__(self, token: bytes, tls: ssl.SSLContext | None, trace_dir: str | None,
                 out: IO[str] | None) -> None:
        self.token = token
        self.tls = tls
        self.sources: dict[str, Source] = {}
        self.out = out  # where the table goes (None: no table)
        self.trace: Any = None
        if trace_dir is not None:
            from ulma.fleet.merged import FleetWriter

            self.trace = FleetWriter(trace_dir)
        self.refused = 0

    def say(self, line: str) -> None:
        sys.stderr.write(f"ulma collect: {line}\n")
        sys.stderr.flush()

    async def serve(self, host: str, port: int, stop: asyncio.Event, duration: float | None) -> None:
        server = await asyncio.start_server(self._connection, host, port, ssl=self.tls,
                                            reuse_address=True)
        bound = ", ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in server.sockets)
        self.say(f"listening on {bound}{' (TLS)' if self.tls else ''}")
        table = asyncio.ensure_future(self._tables(stop))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
        server.close()
        for src in self.sources.values():
            if src.conn is not None:
                src.conn.close()
        table.cancel()
        await asyncio.sleep(0)

    async def _tables(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(TABLE_SECONDS)
            if self.out is not None and self.sources:
                self.out.write(self.table() + "\n")
                self.out.flush()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = f"{peer[0]}" if peer else "?"
        src: Source | None = None
        try:
            try:
                await asyncio.wait_for(wire.server_handshake(reader, writer, self.token), HANDSHAKE_SECONDS)
            except wire.WireError as exc:
                self.refused += 1
                self.say(f"refused a connection from {address}: {exc}")
                return
            src = await self._receive(reader, writer, address)
        except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError,
                zstandard.ZstdError, wire.WireError, ValueError) as exc:
            if src is None:
                self.say(f"dropped a connection from {address}: {type(exc).__name__}: {exc}")
        finally:
            if src is not None and src.conn is writer:
                src.connected = False
                src.conn = None
            writer.close()

    async def _receive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       address: str) -> Source | None:
        src: Source | None = None
        pinger: asyncio.Future[None] | None = None
        t4 = 0

        def handle(kind: bytes, body: bytes) -> None:
            nonlocal src, pinger
            if src is None:
                if kind != wire.HELLO:
                    raise wire.WireError("no hello")
                src = self._hello(json.loads(body), address, writer)
                writer.write(wire.frame(wire.RESUME, wire.SEQ.pack(src.seq)))
                pinger = asyncio.ensure_future(self._pings(writer))
                return
            if src.conn is not writer:  # a newer connection took the session over
                raise _TakenOver
            self._message(src, kind, body, t4)

        inflow = Inflow(handle)
        try:
            while True:
                data = await asyncio.wait_for(reader.read(1 << 16), SILENCE_SECONDS)
                if not data:
                    return src
                t4 = time.monotonic_ns()
                acked = src.seq if src is not None else 0
                try:
                    inflow.feed(data)
                except _TakenOver:
                    return src
                if src is not None and src.seq != acked:
                    writer.write(wire.frame(wire.ACK, wire.SEQ.pack(src.seq)))
                await writer.drain()
        finally:
            if pinger is not None:
                pinger.cancel()

    async def _pings(self, writer: asyncio.StreamWriter) -> None:
        n = 0
        while not writer.is_closing():
            writer.write(wire.frame(wire.PING, wire.TIME.pack(time.monotonic_ns())))
            n += 1
            await asyncio.sleep(0.02 if n < FIRST_PINGS else PING_SECONDS)

    def _hello(self, hello: dict[str, Any], address: str, writer: asyncio.StreamWriter) -> Source:
        stream = str(hello["stream"])
        src = self.sources.get(stream)
        if src is None:
            src = Source(stream=stream, host=str(hello.get("host") or address), address=address,
                         pid=int(hello["pid"]), command=str(hello.get("command", "")),
                         mode=str(hello.get("mode", "aggregates")), meta=dict(hello.get("meta") or {}))
            self.sources[stream] = src
            self.say(f"{src.host} ({address}) process {src.pid}: {src.command} [{src.mode}]")
            if self.trace is not None and src.mode == "events":
                src.writer = self.trace.member(src.host, src.pid, src.meta)
        else:
            if src.conn is not None:
                src.conn.close()
            self.say(f"{src.host} process {src.pid} is back (connection {src.connections + 1})")
        src.connections += 1
        src.connected = True
        src.conn = writer
        return src

    def _message(self, src: Source, kind: bytes, body: bytes, t4: int) -> None:
        if kind == wire.PONG:
            t1, t2, t3 = wire.PONG_BODY.unpack(body)
            src.clock.add(t1, t2, t3, t4)
            return
        if kind == wire.AGGREGATE:
            agg = json.loads(body)
            if not src.finished:
                src.aggregate = agg
            return
        if kind not in (wire.SYMBOLS, wire.EVENTS, wire.FINISH):
            return  # a later version's: ignored
        (seq,) = wire.SEQ.unpack_from(body)
        if seq <= src.seq:
            return  # sent again after a break: we have it
        if seq != src.seq + 1:
            raise wire.WireError(f"message {seq} after {src.seq}")
        src.seq = seq
        if kind == wire.SYMBOLS:
            if src.writer is not None:
                src.writer.symbols(body[wire.SEQ.size:])
        elif kind == wire.EVENTS:
            _, scale, n = wire.EVENTS_HEAD.unpack_from(body)
            at = wire.EVENTS_HEAD.size
            heads = [wire.EVENTS_CHUNK.unpack_from(body, at + i * wire.EVENTS_CHUNK.size) for i in range(n)]
            at += n * wire.EVENTS_CHUNK.size
            for thread, size in heads:
                if src.writer is not None:
                    src.writer.events(thread, body[at:at + size], scale)
                src.events += size // 16
                at += size
        else:
            done = json.loads(body[wire.SEQ.size:])
            src.aggregate = done.get("aggregate") or src.aggregate
            src.end = done.get("end")
            src.finished = True
            self.say(f"{src.host} process {src.pid} finished ({src.events} events received)"
                     if src.mode == "events" else f"{src.host} process {src.pid} finished")

    # -- what it shows and writes

    def table(self) -> str:
        rows = [f"{'host':<16} {'pid':>7} {'events':>10} {'clock offset':>22} {'state':<9} top functions"]
        for src in sorted(self.sources.values(), key=lambda s: s.key):
            agg = src.aggregate or {}
            events = (agg.get("monitor") or {}).get("events", 0)
            c = src.clock
            clock = f"{c.offset_ns / 1e6:+.3f} ms ±{(c.error_ns or 0) / 1e3:.0f} us" if c.known else "-"
            state = "finished" if src.finished else "live" if src.connected else "cut"
            rows.append(f"{src.host[:16]:<16} {src.pid:>7} {events:>10} {clock:>22} {state:<9} "
                        f"{_top(agg.get('functions') or [])}")
        merged = merge_functions(self.sources.values())
        rows.append(f"{'(all)':<16} {'':>7} {self.total_events():>10} {'':>22} {'':<9} {_top(merged)}")
        return "\n".join(rows)

    def total_events(self) -> int:
        return sum(((s.aggregate or {}).get("monitor") or {}).get("events", 0) for s in self.sources.values())

    def document(self) -> dict[str, Any]:
        hosts: dict[str, list[Source]] = {}
        for src in sorted(self.sources.values(), key=lambda s: s.key):
            hosts.setdefault(src.host, []).append(src)
        return {
            "version": JSON_VERSION,
            "clock": "the collector's CLOCK_MONOTONIC; offset_ns: a host's clock minus the collector's, "
                     "within error_ns",
            "hosts": [{"host": host, "processes": [_process(s) for s in srcs]}
                      for host, srcs in hosts.items()],
            "events": self.total_events(),
            "functions": merge_functions(self.sources.values()),
            "refused_connections": self.refused,
        }

    def close(self) -> None:
        if self.trace is not None:
            self.trace.close(list(self.sources.values()))


@dataclass
class _Page:
    server: Any  # ulma.web.server.WebServer
    hub: Any  # ulma.web.fleet.FleetHub


def start_web(collector: Collector, title: str) -> _Page | None:
    """The browser page (its address on stderr, and opened where a browser can show it); a page
    that cannot start is said in a line and the collector goes on."""
    try:
        from ulma.web import fleet
        from ulma.web.cli import open_browser

        server = fleet.start(collector, title)
        if server.error is not None or not server.server.started:
            raise RuntimeError(str(server.error or "the server did not start"))
    except Exception as exc:
        collector.say(f"the web view could not start ({type(exc).__name__}: {exc}); collecting on")
        return None
    collector.say(f"web view at {server.url}")
    open_browser(server.url)
    return _Page(server, server.hub)


def _top(functions: list[dict[str, Any]], n: int = 3) -> str:
    top = sorted(functions, key=lambda f: -(f.get("self_ns") or 0))[:n]
    return ", ".join(f"{f['name']} {(f.get('self_ns') or 0) / 1e6:.1f}ms" for f in top)


def _process(src: Source) -> dict[str, Any]:
    agg = src.aggregate or {}
    monitor = agg.get("monitor") or {}
    return {
        "pid": src.pid, "command": src.command, "address": src.address, "stream": src.stream,
        "mode": src.mode, "finished": src.finished, "connections": src.connections,
        "events": monitor.get("events"), "dropped": monitor.get("dropped"),
        "wall_ns": agg.get("wall_ns"),
        "events_received": src.events if src.mode == "events" else None,
        "stream_dropped_events": (agg.get("stream") or {}).get("events_dropped"),
        "clock": src.clock.report(),
        "functions": agg.get("functions") or [],
        **({"processes": agg["processes"]} if agg.get("processes") else {}),
    }


def merge_functions(sources: Any) -> list[dict[str, Any]]:
    """Every function of every process, the same (name, file, line) added up across them."""
    merged: dict[tuple[str, str, int], dict[str, Any]] = {}
    for src in sources:
        for f in (src.aggregate or {}).get("functions") or []:
            key = (f.get("name"), f.get("file"), f.get("line"))
            row = merged.get(key)
            if row is None:
                row = merged[key] = {"name": key[0], "file": key[1], "line": key[2], "hosts": [],
                                     "processes": 0, **{k: f.get(k) for k in SUMMED}}
            else:
                for k in SUMMED:
                    if f.get(k) is not None:
                        row[k] = (row[k] or 0) + f[k]
            row["processes"] += 1
            if src.host not in row["hosts"]:
                row["hosts"].append(src.host)
    return sorted(merged.values(), key=lambda r: -(r.get("total_ns") or 0))


def collect(host: str, port: int, token: bytes, tls: ssl.SSLContext | None, *, duration: float | None,
            json_path: str | None, trace_dir: str | None, table: bool, web: bool = False) -> int:
    """Runs the collector until SIGINT, SIGTERM or `duration`; writes --json and -o; `web`: the
    browser page too, while it runs (ulma.web.fleet)."""
    collector = Collector(token, tls, trace_dir, sys.stdout if table else None)
    page = start_web(collector, f"collector on {host}:{port}") if web else None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await collector.serve(host, port, stop, duration)

    try:
        asyncio.run(main())
    finally:
        if page is not None:
            page.hub.stopped.done.set()
            page.server.wait_final(timeout=2.0)
            page.server.stop()
        collector.close()
    if table:
        sys.stdout.write(collector.table() + "\n")
    if json_path:
        from ulma.format import files

        with files.writing_text(json_path) as f:
            json.dump(collector.document(), f, indent=1)
    if trace_dir:
        collector.say(f"wrote the merged trace {trace_dir} (`ulma export --format chrome {trace_dir}`)")
    return 0
