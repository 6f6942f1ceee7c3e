"""What `ulma history` asks: the same SQL on chDB, a server and a cluster's Distributed table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ulma.history import HistoryError
from ulma.history.store import Store, literal

SPLIT = ("cpu_ns", "overhead_ns", "wait_ns", "unmeasured_ns")
SUMMED = ("calls", "total_ns", "self_ns", *SPLIT)
# a column's sum under a name of its own (an alias equal to a column's name would shadow it)
_SUMS = ", ".join(f"sum({c}) AS s_{c}" for c in SUMMED)


@dataclass
class Scope:
    """Which rows: a time range (Unix seconds, both ends included), a host, a run."""

    since: int | None = None
    until: int | None = None
    host: str | None = None
    run: str | None = None

    def where(self, *more: str) -> str:
        parts = list(more)
        if self.since is not None:
            parts.append(f"ts >= toDateTime({self.since})")
        if self.until is not None:
            parts.append(f"ts <= toDateTime({self.until})")
        if self.host is not None:
            parts.append(f"host = {literal(self.host)}")
        if self.run is not None:
            parts.append(f"run_id = {literal(self.run)}")
        return " WHERE " + " AND ".join(parts) if parts else ""


def _figures(row: tuple[Any, ...]) -> dict[str, int]:
    return {c: int(v) for c, v in zip(SUMMED, row, strict=True)}


def top(store: Store, scope: Scope, limit: int) -> list[dict[str, Any]]:
    """The functions with the most time in the scope, their figures summed; limit 0: all."""
    sql = (f"SELECT name, file, line, {_SUMS} FROM {store.dsn.db}.functions{scope.where()} "
           "GROUP BY name, file, line ORDER BY s_total_ns DESC, name, file, line"
           + (f" LIMIT {limit}" if limit else ""))
    return [{"name": r[0], "file": r[1], "line": int(r[2]), **_figures(r[3:])} for r in store.query(sql)]


def trend(store: Store, scope: Scope, name: str, file: str | None, step: int) -> dict[str, Any]:
    """One function's figures per `step` seconds (every file and line of that name unless `file`)."""
    match = [f"name = {literal(name)}"] + ([f"file = {literal(file)}"] if file else [])
    where = scope.where(*match)
    db = store.dsn.db
    places = store.query(f"SELECT DISTINCT file, line FROM {db}.functions{where}")
    if not places:
        what = f"{name!r} in {file}" if file else repr(name)
        ranged = " in that range" if scope.since or scope.until else ""
        raise HistoryError(f"no function {what} in the history{ranged} (see `ulma history top`)")
    sql = (f"SELECT intDiv(toUInt32(ts), {step}) * {step} AS t, {_SUMS} FROM {db}.functions{where} "
           "GROUP BY t ORDER BY t")
    points = [{"ts": int(r[0]), **_figures(r[1:])} for r in store.query(sql)]
    return {"name": name, "places": [{"file": f, "line": int(line)} for f, line in sorted(places)],
            "step": step, "points": points}


def callers(store: Store, scope: Scope, name: str, file: str | None) -> dict[str, Any]:
    """Who called the function (every file and line of that name unless `file`), with the calls and
    the function's time from each caller, summed."""
    match = [f"name = {literal(name)}"] + ([f"file = {literal(file)}"] if file else [])
    sql = (f"SELECT caller_name, caller_file, caller_line, sum(calls) AS s_calls, sum(total_ns) AS s_total "
           f"FROM {store.dsn.db}.edges{scope.where(*match)} GROUP BY caller_name, caller_file, caller_line "
           "ORDER BY s_total DESC, caller_name")
    rows = store.query(sql)
    if not rows:
        what = f"{name!r} in {file}" if file else repr(name)
        raise HistoryError(f"no calls of {what} in the history (see `ulma history top`)")
    return {"name": name, "callers": [{"name": r[0], "file": r[1], "line": int(r[2]), "calls": int(r[3]),
                                       "total_ns": int(r[4])} for r in rows]}


def run_ids(store: Store) -> set[str]:
    return {r[0] for r in store.query(f"SELECT DISTINCT run_id FROM {store.dsn.db}.functions")}


def compare(store: Store, run: str, baseline: str, threshold: float) -> dict[str, Any]:
    """Per function in both runs: time per call in each, and the split's change per call; slower
    when its time per call grew by more than `threshold` per cent."""
    known = run_ids(store)
    for rid in (run, baseline):
        if rid not in known:
            raise HistoryError(f"no run {rid!r} in the history (see `ulma history runs`)")
    sql = (f"SELECT run_id, name, file, line, {_SUMS} FROM {store.dsn.db}.functions "
           f"WHERE run_id IN ({literal(run)}, {literal(baseline)}) GROUP BY run_id, name, file, line")
    by: dict[str, dict[tuple[str, str, int], dict[str, int]]] = {run: {}, baseline: {}}
    for r in store.query(sql):
        by[r[0]][(r[1], r[2], int(r[3]))] = _figures(r[4:])
    rows: list[dict[str, Any]] = []
    for key in by[run].keys() & by[baseline].keys():
        now, then = by[run][key], by[baseline][key]
        if not now["calls"] or not then["calls"]:
            continue
        per = {c: now[c] / now["calls"] for c in SUMMED[1:]}
        per_then = {c: then[c] / then["calls"] for c in SUMMED[1:]}
        change = per["total_ns"] / per_then["total_ns"] - 1 if per_then["total_ns"] > 0 else None
        rows.append({
            "name": key[0], "file": key[1], "line": key[2],
            "calls": now["calls"], "baseline_calls": then["calls"],
            "per_call_ns": round(per["total_ns"]), "baseline_per_call_ns": round(per_then["total_ns"]),
            "change": None if change is None else round(change, 4),
            # where the time per call went: each part of the split, this run less the baseline
            "delta_per_call_ns": {c: round(per[c] - per_then[c]) for c in ("total_ns", *SPLIT)},
            "slower": change is not None and change * 100 > threshold,
        })
    # the extra time this run spent in each function for its being slower per call
    rows.sort(key=lambda r: -r["delta_per_call_ns"]["total_ns"] * r["calls"])
    return {"run": run, "baseline": baseline, "threshold_percent": threshold, "functions": rows}


def hosts(store: Store, scope: Scope) -> list[dict[str, Any]]:
    sql = (f"SELECT host, uniqExact(pid), uniqExact(run_id), toUInt32(min(ts)), toUInt32(max(ts)), "
           f"{_SUMS} FROM {store.dsn.db}.functions{scope.where()} GROUP BY host ORDER BY host")
    return [{"host": r[0], "processes": int(r[1]), "runs": int(r[2]), "first": int(r[3]),
             "last": int(r[4]), **_figures(r[5:])} for r in store.query(sql)]


def runs(store: Store, scope: Scope) -> list[dict[str, Any]]:
    db = store.dsn.db
    sql = (f"SELECT run_id, host, pid, toUInt32(min(ts)), toUInt32(max(ts)), count(), sum(calls), "
           f"sum(total_ns) FROM {db}.functions{scope.where()} GROUP BY run_id, host, pid "
           "ORDER BY min(ts), run_id")
    said = store.query(f"SELECT run_id, any(command) FROM {db}.runs GROUP BY run_id")
    commands = {r[0]: r[1] for r in said}
    return [{"run_id": r[0], "host": r[1], "pid": int(r[2]), "command": commands.get(r[0], ""),
             "first": int(r[3]), "last": int(r[4]), "rows": int(r[5]), "calls": int(r[6]),
             "total_ns": int(r[7])} for r in store.query(sql)]


def types(store: Store, scope: Scope, limit: int) -> list[dict[str, Any]]:
    """--objects runs: each type's objects made, destroyed and live bytes over the scope, most
    left live first; limit 0: all."""
    db = store.dsn.db
    if not int(store.query(f"EXISTS TABLE {db}.objects")[0][0]):
        raise HistoryError("no object counts in the history (`ulma run --objects --history` writes them)")
    sql = (f"SELECT type_name, sum(created) AS s_created, sum(freed) AS s_freed, sum(freed_untracked), "
           f"sum(bytes) FROM {db}.objects{scope.where()} GROUP BY type_name "
           "ORDER BY s_created - s_freed DESC, s_created DESC, type_name"
           + (f" LIMIT {limit}" if limit else ""))
    return [{"name": r[0], "created": int(r[1]), "freed": int(r[2]), "live": int(r[1]) - int(r[2]),
             "freed_untracked": int(r[3]), "bytes": int(r[4])} for r in store.query(sql)]
