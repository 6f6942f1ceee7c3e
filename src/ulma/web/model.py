"""What the browser page draws, as plain JSON-able data: the table's rows, the
icicle's tree, the per-thread timeline and the monitor's health.

The live server (``ulma.web.server``) and the HTML report
(``ulma.exporters.html``) both build their page's data here, so the one page
script (``static/ulma.js``) draws either: a live snapshot has per-function and
per-edge totals only, so its icicle is derived from the edges (``edge_tree``,
marked approximate); a trace's replay keeps every distinct stack, so the
report's icicle is exact (built by the exporter from the replay's tree)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from ulma.monitor.live import Health
from ulma.monitor.profile import FunctionStats, Profile
from ulma.views import bar

Json = dict[str, Any]

# bar.py's terminal colours as the page draws them
COLOURS = {"red": "#d9534f", "yellow": "#f0c419", "blue": "#3b7dd8", "white": "#e4e4e4",
           "magenta": "#b04fc4"}
MAX_FLAME_NODES = 4000  # a page redrawn every refresh: more frames than pixels helps nobody
MAX_FLAME_DEPTH = 64
MIN_FLAME_SHARE = 0.001  # frames under this share of the whole tree are left out (edge tree)


def parts(split_known: bool) -> list[Json]:
    """The four-way split's parts (three without CPU readings), in bar.py's order."""
    return [{"name": p.name, "color": COLOURS.get(p.style, p.style)} for p in bar.parts_for(split_known)]


def split_of(f: FunctionStats, split_known: bool) -> list[int]:
    """f's total time in the order of ``parts(split_known)``."""
    return [round(v) for v in bar.split_values(f, split_known)]


def self_split_of(f: FunctionStats, split_known: bool) -> list[int]:
    """f's self time in the order of ``parts(split_known)``: CPU, overhead and waiting
    (unmeasured time is in callees, never a function's own)."""
    cpu, over, wait = f.self_cpu_ns, f.self_overhead_ns, f.self_wait_ns
    return [cpu, over, wait, 0] if split_known else [cpu + wait, over, 0]


def rows(profile: Profile, before: dict[int, int] | None, dt_s: float,
         switching: dict[int, str] | None = None) -> list[Json]:
    """One row per function, the terminal view's columns: calls (+resumes), calls/s since
    `before` (fid -> activations; None: no rate), self, total, per call, % of the covered
    time, and the four-way split of its total.  `switching`: fid -> "off…"/"on…" for a
    switch asked and not yet taken."""
    wall = max(profile.wall_ns, 1)
    out = []
    for f in profile.functions:
        if f.idle:  # the event loop waiting: in the header, as in the terminal view
            continue
        rate = None
        if before is not None and dt_s > 0 and f.fid:
            rate = max(f.activations - before.get(f.fid, 0), 0) / dt_s
        mark = (switching or {}).get(f.fid, "")
        if not mark and f.off:
            mark = "off"
        elif not mark and f.off_ns:
            mark = "was off"
        out.append({
            "fid": f.fid, "name": f.name, "file": f.file, "line": f.line, "calls": f.calls,
            "resumes": f.resumes, "rate": rate, "self": f.self_ns, "total": f.total_ns,
            "per_call": f.total_ns / f.calls if f.calls else None, "share": 100 * f.self_ns / wall,
            "split": split_of(f, profile.split_known), "native": f.native, "mark": mark,
        })
    return out


def activations(profile: Profile) -> dict[int, int]:
    """fid -> calls and resumes so far: the baseline of the next rows' calls/s."""
    return {f.fid: f.activations for f in profile.functions if f.fid}


def frame(name: str, file: str, line: int, fid: int, value: int, split: Sequence[float]) -> Json:
    return {"name": name, "file": file, "line": line, "fid": fid, "value": value,
            "split": [round(v) for v in split], "children": []}


def edge_tree(profile: Profile) -> Json:
    """An icicle of inclusive time derived from per-function and per-edge totals: what a
    live snapshot has (see _derived_tree)."""
    known = profile.split_known
    nodes = [Node(f.name, f.file, f.line, f.fid, f.total_ns, split_of(f, known), f.idle)
             for f in profile.functions]
    return _derived_tree(nodes, [(e.caller, e.callee, e.total_ns) for e in profile.edges], known)


class Node(NamedTuple):
    """A function as a derived icicle needs it."""

    name: str
    file: str
    line: int
    fid: int
    total_ns: int
    split: list[int]
    idle: bool


def _derived_tree(funcs: Sequence[Node], edges: Iterable[tuple[int, int, int]], known: bool) -> Json:
    """A function's roots are the time not reached through any caller; under a frame standing
    for share s of function f's total, each callee g gets s times the time f's calls into g
    took.  Exact when each function is reached along one path; otherwise the children of a
    function called from several places are spread over those places in proportion (the page
    says it is an approximation).  Recursion is cut: a function is not expanded below itself.
    Each frame is coloured by its function's inclusive split.  `edges`: (caller, callee, total
    ns), indices into `funcs`."""
    out_edges: dict[int, list[tuple[int, int]]] = {}
    incoming = [0] * len(funcs)
    for caller, callee, total in edges:
        if caller != callee and 0 <= caller < len(funcs) and 0 <= callee < len(funcs):
            out_edges.setdefault(caller, []).append((callee, total))
            incoming[callee] += total
    for targets in out_edges.values():
        targets.sort(key=lambda e: -e[1])
    root = frame("all", "", 0, 0, 0, [0.0] * len(parts(known)))
    tops = [(i, f.total_ns - incoming[i]) for i, f in enumerate(funcs) if not f.idle]
    tops = [(i, v) for i, v in tops if v > 0]
    whole = sum(v for _, v in tops)
    floor = whole * MIN_FLAME_SHARE
    budget = [MAX_FLAME_NODES]

    def grow(i: int, value: float, path: frozenset[int], depth: int) -> Json:
        f = funcs[i]
        share = value / f.total_ns if f.total_ns else 0.0
        node = frame(f.name, f.file, f.line, f.fid, round(value), [v * share for v in f.split])
        budget[0] -= 1
        if depth >= MAX_FLAME_DEPTH:
            return node
        room = value
        for callee, total in out_edges.get(i, ()):
            if callee in path:
                continue
            child = min(total * share, room)
            if child < floor or budget[0] <= 0:
                continue
            room -= child
            node["children"].append(grow(callee, child, path | {callee}, depth + 1))
        return node

    for i, value in sorted(tops, key=lambda t: -t[1]):
        if value >= floor and budget[0] > 0:
            root["children"].append(grow(i, value, frozenset({i}), 1))
    root["value"] = sum(c["value"] for c in root["children"])
    root["split"] = _sum_splits(c["split"] for c in root["children"])
    return root


def _sum_splits(splits: Iterable[Sequence[int]]) -> list[int]:
    total: list[int] = []
    for s in splits:
        if not total:
            total = [0] * len(s)
        total = [a + b for a, b in zip(total, s, strict=True)]
    return total


def health(h: Health, events_per_s: float | None, cpu_percent: float | None) -> Json:
    """The monitor's health strip (monitor/live.py's Health, and its rates)."""
    return {"events": h.events, "dropped": h.dropped, "fill": h.fill, "lag_ns": h.lag_ns,
            "events_per_s": events_per_s, "cpu_percent": cpu_percent, "returncode": h.returncode}


# -- the collector's view (ulma collect --web): its figures are plain dicts, --jsonl's functions


def figures_split(f: Json, split_known: bool) -> list[int]:
    """A --jsonl function's total time in the order of ``parts(split_known)``."""
    total, over, unmeasured = f.get("total_ns") or 0, f.get("overhead_ns") or 0, f.get("unmeasured_ns") or 0
    if split_known:
        return [f.get("cpu_ns") or 0, over, f.get("wait_ns") or 0, unmeasured]
    return [max(total - over - unmeasured, 0), over, unmeasured]


def figures_rows(functions: Iterable[Json], wall_ns: int, split_known: bool) -> list[Json]:
    """The table's rows from --jsonl functions (a streamed process's, or several added up):
    no calls/s (the collector hears figures every second or so), no switches (fid 0)."""
    wall = max(wall_ns, 1)
    out = []
    for f in functions:
        if f.get("idle"):
            continue
        calls, self_ns, total = f.get("calls") or 0, f.get("self_ns") or 0, f.get("total_ns") or 0
        out.append({
            "fid": 0, "name": str(f.get("name")), "file": str(f.get("file") or ""),
            "line": f.get("line") or 0,
            "calls": calls, "resumes": f.get("resumes") or 0, "rate": None, "self": self_ns, "total": total,
            "per_call": total / calls if calls else None, "share": 100 * self_ns / wall,
            "split": figures_split(f, split_known), "native": bool(f.get("native")), "mark": "",
        })
    return out


def figures_edge_tree(functions: Sequence[Json], edges: Iterable[Json], split_known: bool) -> Json:
    """edge_tree from --jsonl's functions and edges (their ends index the functions)."""
    nodes = [Node(str(f.get("name")), str(f.get("file") or ""), f.get("line") or 0, 0, f.get("total_ns") or 0,
                  figures_split(f, split_known), bool(f.get("idle"))) for f in functions]
    return _derived_tree(nodes, [(int(e["caller"]), int(e["callee"]), int(e.get("total_ns") or 0))
                                 for e in edges], split_known)


def figures_tree(functions: Iterable[Json], split_known: bool) -> Json:
    """What an icicle can be without call edges: each function's self time under the root."""
    root = frame("all", "", 0, 0, 0, [0.0] * len(parts(split_known)))
    for f in sorted(functions, key=lambda f: -(f.get("self_ns") or 0))[:MAX_FLAME_NODES]:
        self_ns = f.get("self_ns") or 0
        if f.get("idle") or self_ns <= 0:
            continue
        total = f.get("total_ns") or 0
        share = self_ns / total if total else 0.0
        root["children"].append(frame(str(f.get("name")), str(f.get("file") or ""), f.get("line") or 0, 0,
                                      self_ns, [v * share for v in figures_split(f, split_known)]))
    root["value"] = sum(c["value"] for c in root["children"])
    root["split"] = _sum_splits(c["split"] for c in root["children"])
    return root
