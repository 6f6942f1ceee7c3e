"""The live browser view's server: starlette on uvicorn, in a thread of the monitor.

It listens on 127.0.0.1 only, on a port the kernel picks, and answers only
requests that carry the run's random token (``?token=``) and name that very
address as their Host (a page elsewhere that rebinds a name of its own to
127.0.0.1 cannot read it): anything else gets 403, HTTP and websocket alike.
One page (``ulma.web.page``, everything inlined) and one websocket, over which
the server pushes a model of the latest snapshot each refresh (``Hub``: one
snapshot per refresh however many pages are open, none while no page is) and
takes the page's controls: clear, switch a function off or on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from ulma.format.records import SYM_PYFUNC
from ulma.monitor.control import ChannelFull
from ulma.monitor.live import Health, LiveSource, rates
from ulma.web import model, page

REFRESH_SECONDS = 0.5
TIMELINE_SECONDS = 30.0  # how far back the live timeline goes
RATE_WINDOW_NS = 1_000_000_000  # health rates over about a second, as the terminal view
EDGE_NOTE = ("approximate: built from per-function and caller→callee totals (the live snapshot "
             "keeps no stacks); a function called from several places has its callees spread "
             "over them in proportion. `ulma export --format html` of a trace draws exact stacks")
TIMELINE_NOTE = (f"events each thread wrote per second, at each refresh, over the last "
                 f"{TIMELINE_SECONDS:.0f} s while a page was open")
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
           "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}


class TokenGate:
    """ASGI middleware: 403 for a request without the token or for another Host."""

    def __init__(self, app: ASGIApp, token: str, hosts: set[str]) -> None:
        self.app = app
        self.token = token.encode()
        self.hosts = hosts

    def allowed(self, scope: Scope) -> bool:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = query.get("token", [""])[0].encode("latin-1", "replace")
        headers = dict(scope.get("headers", ()))
        host = headers.get(b"host", b"").decode("latin-1")
        return secrets.compare_digest(given, self.token) and host in self.hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self.allowed(scope):
            if scope["type"] == "http":
                await PlainTextResponse("403: this page needs the address ulma printed, with its token",
                                        status_code=403, headers=HEADERS)(scope, receive, send)
            else:  # closed before it was accepted: the server answers the handshake with 403
                await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)


class Hub:
    """Snapshots of one live source, turned into the page's model, shared by every
    open page; and the controls pages ask for."""

    def __init__(self, source: LiveSource, title: str, refresh_seconds: float) -> None:
        self.source = source
        self.title = title
        self.refresh = refresh_seconds
        self.clients = 0
        self.seq = 0
        self.latest = ""
        self._lock = threading.Lock()  # the baselines: sampled in one thread, reset from another
        self._calls: dict[int, int] | None = None
        self._calls_at = 0
        self._health: deque[Health] = deque()
        self._events: dict[int, int] = {}
        self._samples: dict[int, deque[tuple[float, float]]] = {}
        self._names: dict[int, str] = {}
        self._t0 = time.monotonic()
        self._last_t: float | None = None
        self.final = False
        self._changed: asyncio.Condition | None = None

    # -- sampling (a worker thread) --------------------------------------------------------

    def sample(self) -> str:
        """The model of a snapshot taken now, as JSON text."""
        snap = self.source.snapshot()
        profile, health = snap.profile, snap.health
        now = time.monotonic()
        with self._lock:
            dt = (health.at_ns - self._calls_at) / 1e9
            functions = model.rows(profile, self._calls, dt, self._switching())
            self._calls, self._calls_at = model.activations(profile), health.at_ns
            self._health.append(health)
            while len(self._health) > 2 and health.at_ns - self._health[1].at_ns >= RATE_WINDOW_NS:
                self._health.popleft()
            rate = rates(self._health[0], health) if len(self._health) > 1 else None
            timeline = self._timeline(profile.threads, now)
        data = {
            "type": "snapshot", "live": True, "title": self.title, "ended": self.source.done.is_set(),
            "returncode": health.returncode, "cleared": self.source.cleared, "wall_ns": profile.wall_ns,
            "split_known": profile.split_known, "parts": model.parts(profile.split_known),
            "functions": functions, "flame": model.edge_tree(profile), "flame_note": EDGE_NOTE,
            "timeline": timeline,
            "health": model.health(health, rate.events_per_s if rate else None,
                                   rate.cpu_percent if rate else None),
        }
        return json.dumps(data, separators=(",", ":"))

    def _switching(self) -> dict[int, str]:
        """Switches asked for and not yet taken by the agent."""
        out = {}
        for fid, sw in list(self.source.control.functions.items()):
            if sw.pending:
                out[fid] = "on…" if sw.off_since_ns is not None else "off…"
        return out

    def _timeline(self, threads: list[Any], now: float) -> model.Json:
        """Events per second of each thread since the previous sample, kept TIMELINE_SECONDS."""
        t = now - self._t0
        dt = t - self._last_t if self._last_t is not None else 0.0
        for info in threads:
            before = self._events.get(info.thread)
            self._events[info.thread] = info.events
            tid = f" (tid {info.os_tid})" if info.os_tid else ""
            self._names[info.thread] = f"thread {info.thread}{tid}"
            if before is not None and dt > 0:
                self._samples.setdefault(info.thread, deque()).append((t, max(info.events - before, 0) / dt))
        self._last_t = t
        for samples in self._samples.values():
            while samples and samples[0][0] < t - TIMELINE_SECONDS:
                samples.popleft()
        lanes = [{"name": self._names[k], "samples": [[round(a, 3), b] for a, b in v]}
                 for k, v in sorted(self._samples.items()) if v]
        return {"kind": "rates", "note": TIMELINE_NOTE, "start": round(t - TIMELINE_SECONDS, 3),
                "end": round(t, 3), "slots": round(TIMELINE_SECONDS / self.refresh), "threads": lanes}

    # -- controls (a worker thread) --------------------------------------------------------

    def act(self, message: Any) -> str:
        """A page's control; the answer is a line the page shows."""
        if not isinstance(message, dict):
            return "not a control"
        action = message.get("action")
        if action == "clear":
            if self.source.done.is_set():
                return "the program has ended: history kept"
            self.source.clear()
            with self._lock:  # calls/s count from here
                self._calls, self._calls_at = {}, time.monotonic_ns()
            return "cleared"
        if action == "switch":
            fid, off = message.get("fid"), message.get("off")
            if type(fid) is not int or type(off) is not bool:
                return "switch needs a function id and off: true or false"
            symbol = self.source.symbols().get(fid)
            if symbol is None or symbol.kind != SYM_PYFUNC:
                return "no such Python function (C functions cannot be switched)"
            if self.source.done.is_set():
                return "the program has ended"
            try:
                self.source.control.switch([fid], off)
            except ChannelFull:
                return "the agent has not taken the last switches yet (is the program running Python code?)"
            return f"{symbol.name} {'off' if off else 'on'}: asked"
        return f"unknown action {action!r}"

    # -- the event loop --------------------------------------------------------------------

    async def run(self) -> None:
        """Samples every refresh while a page is open; after the program ended, once more
        (its final figures) and then no more."""
        self._changed = asyncio.Condition()
        while True:
            if self.clients and not self.final:
                self.final = self.source.done.is_set()
                text = await asyncio.to_thread(self.sample)
                async with self._changed:
                    self.seq, self.latest = self.seq + 1, text
                    self._changed.notify_all()
            await asyncio.sleep(self.refresh)

    async def next(self, seen: int) -> tuple[int, str]:
        """The first model after the one numbered `seen`."""
        assert self._changed is not None
        async with self._changed:
            await self._changed.wait_for(lambda: self.seq > seen)
            return self.seq, self.latest


def make_app(hub: Hub, token: str, port: int) -> ASGIApp:
    html = page.render(None)
    sampler: list[asyncio.Task[None]] = []

    async def index(request: Request) -> Response:
        return HTMLResponse(html, headers=HEADERS)

    async def feed(ws: WebSocket) -> None:
        await ws.accept()
        if not sampler:
            sampler.append(asyncio.create_task(hub.run()))
            await asyncio.sleep(0)  # its condition exists before anyone waits on it
        hub.clients += 1

        async def push() -> None:
            seen = 0
            while True:
                seen, text = await hub.next(seen)
                await ws.send_text(text)

        pusher = asyncio.create_task(push())
        try:
            while True:
                try:
                    message = json.loads(await ws.receive_text())
                except ValueError:
                    message = None
                answer = await asyncio.to_thread(hub.act, message)
                await ws.send_json({"type": "notice", "text": answer})
        except WebSocketDisconnect:
            pass
        finally:
            hub.clients -= 1
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pusher

    app = Starlette(routes=[Route("/", index), WebSocketRoute("/ws", feed)])
    return TokenGate(app, token, {f"127.0.0.1:{port}", f"localhost:{port}"})


class WebServer:
    """The server in a daemon thread; ``url`` carries the token."""

    def __init__(self, source: LiveSource | None, title: str, refresh_seconds: float | None = None,
                 hub: Callable[[float], Hub] | None = None) -> None:
        """`hub`: makes the Hub (of its refresh) for a page over something other than a live
        session (ulma.web.fleet: the collector's)."""
        self.token = secrets.token_urlsafe(24)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)  # a page opened before uvicorn is up waits in the backlog, not refused
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/?token={self.token}"
        refresh = refresh_seconds or REFRESH_SECONDS
        if hub is not None:
            self.hub = hub(refresh)
        else:
            assert source is not None
            self.hub = Hub(source, title, refresh)
        config = uvicorn.Config(make_app(self.hub, self.token, self.port), log_config=None,
                                log_level="warning", access_log=False, lifespan="off",
                                ws="websockets-sansio", server_header=False, date_header=False,
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, name="ulma-web", daemon=True)
        self.error: BaseException | None = None

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # said by the caller; the program goes on without the page
            self.error = exc

    def start(self, timeout: float = 10.0) -> WebServer:
        """Starts serving; returns once uvicorn is up (or failed, or `timeout` passed)."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def wait_final(self, timeout: float) -> None:
        """After the program ended: gives open pages the time to get its final figures."""
        deadline = time.monotonic() + timeout
        while self.hub.clients and not self.hub.final and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.hub.clients:
            time.sleep(min(self.hub.refresh, max(deadline - time.monotonic(), 0)))

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()
