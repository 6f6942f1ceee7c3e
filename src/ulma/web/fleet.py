"""``ulma collect --web``: the live browser page over the collector's figures.

The same server and page as ``ulma run --web`` (ulma.web.server), fed by the
collector's per-process figures (what its table and --json show: the --jsonl
objects the monitors stream) instead of a live session: one view per host and
process and one of them all added up ("all (merged)"), the page's selector
choosing.  Streamed figures carry per-function and caller-to-callee totals, no
call stacks, so the icicle is derived from the edges as the live page's is
(approximate where a function is called from several places; each function's
self time where a monitor sent no edges); and nothing here can clear or switch
a function off in another host's program, so the page shows no such
controls."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from ulma.web import model
from ulma.web.server import Hub, WebServer

if TYPE_CHECKING:
    from ulma.fleet.collector import Collector, Source

FLAME_NOTE = ("approximate: built from per-function and caller→callee totals (the streamed figures "
              "carry no call stacks); a function called from several places has its callees spread "
              "over them in proportion")


class Stopped:
    """What the Hub asks of its source: whether it ended (the collector stopped)."""

    def __init__(self) -> None:
        self.done = threading.Event()


class FleetHub(Hub):
    def __init__(self, collector: Collector, title: str, refresh_seconds: float) -> None:
        self.stopped = Stopped()
        super().__init__(self.stopped, title, refresh_seconds)  # type: ignore[arg-type]
        self.collector = collector

    def _sources(self) -> list[Source]:
        for _ in range(10):  # the collector's loop adds sources meanwhile
            try:
                return sorted(self.collector.sources.values(), key=lambda s: s.key)
            except RuntimeError:
                continue
        return []

    def sample(self) -> str:
        from ulma.fleet.collector import merge_functions

        sources = self._sources()
        aggs = [(s, s.aggregate or {}) for s in sources]
        views = []
        known = bool(aggs) and all(a.get("cpu_readings") for _, a in aggs)
        merged = merge_functions(sources)
        merged_edges = merge_edges(sources, merged)
        hosts = len({s.host for s in sources})
        walls = sum(a.get("wall_ns") or 0 for _, a in aggs)
        views.append(_view("all", f"all (merged): {len(sources)} processes on {hosts} hosts", merged, walls,
                           known, [a.get("monitor") or {} for _, a in aggs], edges=merged_edges))
        for s, a in aggs:
            state = "finished" if s.finished else "live" if s.connected else "cut"
            clock = s.clock.report()
            if s.clock.known:
                state += f", clock {s.clock.offset_ns / 1e6:+.3f} ms ±{(s.clock.error_ns or 0) / 1e3:.0f} µs"
            views.append(_view(f"{s.host}/{s.pid}", f"{s.host} pid {s.pid}: {s.command} ({state})",
                               a.get("functions") or [], a.get("wall_ns") or 0, bool(a.get("cpu_readings")),
                               [a.get("monitor") or {}], clock=clock, edges=a.get("edges")))
        data: dict[str, Any] = {
            "type": "snapshot", "live": True, "fleet": True, "title": self.title,
            "ended": self.stopped.done.is_set(), "returncode": None, "cleared": False,
            "flame_note": FLAME_NOTE, "timeline": None, "views": views, **views[0],
        }
        return json.dumps(data, separators=(",", ":"))

    def act(self, message: Any) -> str:
        return "the collector's view has no controls: it shows what the hosts send"


def merge_edges(sources: list[Source], merged: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Every process's caller-callee totals, their ends the same (name, file, line) in the merged
    functions; None if a monitor sent none (an older one)."""
    at = {(f["name"], f["file"], f["line"]): i for i, f in enumerate(merged)}
    totals: dict[tuple[int, int], int] = {}
    for src in sources:
        agg = src.aggregate or {}
        if "edges" not in agg:
            return None
        funcs = agg.get("functions") or []
        keys = [at.get((f.get("name"), f.get("file"), f.get("line"))) for f in funcs]
        for e in agg["edges"]:
            caller, callee = e.get("caller"), e.get("callee")
            if not (isinstance(caller, int) and isinstance(callee, int)
                    and 0 <= caller < len(keys) and 0 <= callee < len(keys)):
                continue
            a, b = keys[caller], keys[callee]
            if a is not None and b is not None:
                totals[a, b] = totals.get((a, b), 0) + int(e.get("total_ns") or 0)
    return [{"caller": a, "callee": b, "total_ns": t} for (a, b), t in totals.items()]


def _view(key: str, label: str, functions: list[dict[str, Any]], wall_ns: int, known: bool,
          monitors: list[dict[str, Any]], clock: dict[str, Any] | None = None,
          edges: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    def total(name: str) -> Any:
        values = [m.get(name) for m in monitors if m.get(name) is not None]
        return sum(values) if values else None

    fills: list[float] = [m["ring_fill"] for m in monitors if m.get("ring_fill") is not None]
    lags: list[int] = [m["lag_ns"] for m in monitors if m.get("lag_ns") is not None]
    health = {"events": total("events") or 0, "dropped": total("dropped") or 0,
              "fill": max(fills) if fills else 0.0, "lag_ns": max(lags) if lags else None,
              "events_per_s": total("events_per_s"), "cpu_percent": total("cpu_percent"), "returncode": None}
    return {"key": key, "label": label, "wall_ns": wall_ns, "split_known": known,
            "parts": model.parts(known), "functions": model.figures_rows(functions, wall_ns, known),
            "flame": (model.figures_tree(functions, known) if edges is None
                      else model.figures_edge_tree(functions, edges, known)),
            "health": health, "clock": clock}


def start(collector: Collector, title: str) -> WebServer:
    """The page's server, started (its url with the token)."""
    return WebServer(None, title, hub=lambda refresh: FleetHub(collector, title, refresh)).start()
