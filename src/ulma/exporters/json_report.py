"""The JSON report (``ulma run --json FILE``).

Contract, version 1 -- later versions add fields, never rename these:
``{"version", "python", "wall_ns", "events", "dropped", "threads",
"functions": [{"name", "file", "line", "calls", "resumes", "self_ns", "total_ns"}],
"edges": [{"caller", "callee", "calls", "total_ns"}]}`` (edge ends index functions).

Added later: per function the four-way split of total_ns -- ``cpu_ns``,
``wait_ns``, ``overhead_ns``, ``unmeasured_ns`` (they add up to total_ns;
cpu_ns and wait_ns are null when no CPU readings were taken), with
``wait_blocked_ns`` and ``wait_runnable_ns`` where the kernel tells them apart
(else null); the split of self_ns (``self_cpu_ns``, ``self_wait_ns``,
``self_overhead_ns``); ``call_overhead_ns`` (what callers spent getting into
it, with native calls), ``native`` (a C function) and ``kind`` (``python``, ``c``,
``scope`` or ``mark``: a native scope's or mark's site, whose calls are its instants).  At
the top:
``probe_ns`` (the calibrated cost of one probe; ``scope_probe_ns`` and
``scope_end_probe_ns`` those of the gaps a native scope's begin and end records close,
ulma.h), ``overhead_ns`` (all
overhead taken out of the functions' CPU time), ``cpu_readings``,
``native_calls``, ``tool_id`` (the sys.monitoring tool id ulma used, 3 or 4;
null on the PEP 523 engine), ``hooks_displaced`` (how often the program's own
profile function or frame evaluator took over from ulma's; calls into C are
not traced in a thread after that), ``ids_overflow`` (functions made after every function id
was taken: their calls are in the row "<functions past the id limit>"),
``forked_children`` (children the program forked while profiled: they ran
unprofiled, and are in no count), ``scope`` (the --only and --exclude options
in effect: what they leave out is not traced, its time is in its callers'
self time).  Per function: ``off`` (switched off now), ``off_ns`` (how long
it was switched off through the control channel; its counts cover the time
it was on) and ``untraced_callees`` (its self time includes a callee's time
while that callee was switched off: not its own measured CPU).
Loss besides drops: ``untraced_threads`` (threads that got
no ring: more were alive at once than --max-threads), ``untraced_events``
(their events, counted, not recorded) and ``symbols_lost`` (function names
that did not fit the symbol table: those functions show as ``<unknown #id>``).
With children followed (``ulma run`` without --no-children): ``processes``, one
object per process of the run, the program first -- ``pid``, ``command``,
``how`` ("main", "fork", "exec"), ``status`` ("exit 0", "killed by SIGTERM",
"ended", "still running", "unprofiled: <why>"), ``profiled``, and for a
profiled one its own ``wall_ns``, ``events``, ``dropped``, ``functions`` and
``edges`` (as at the top); the top-level functions, edges and counts are then
every profiled process's added up (the same name, file and line is one
function), and ``forked_children`` counts only the forks that ran unprofiled.
asyncio (monitor/eventloop.py): per function ``await_ns`` (a coroutine's time
suspended in ``await``, part of its ``wait_ns``; null without CPU readings)
and ``self_await_ns`` (the part not awaiting another coroutine, in
``self_wait_ns``), and ``idle`` (an event loop's selector waiting with nothing
ready); at the top ``asyncio``: ``loop_idle_ns`` and ``tasks``, one object per
coroutine function the loop ran as tasks -- ``name``, ``file``, ``line``,
``tasks``, ``steps``, ``running_ns``, ``awaiting_ns``; ``block_ns`` (the
--loop-block limit), ``blocked`` (each callback or task step that held the
loop longer: ``thread``, ``start_ns`` into the run, ``ns``, ``stack`` from the
loop's Handle._run up, outermost first, at the moment it passed the limit)
and ``blocked_more`` (more of them, only counted: past 1000); ``task_list``,
the tasks one by one (those still going, then the finished ones kept: the
1000 longest-lived), each with ``number`` (1, 2, ... per process in the order
seen), ``name``, its ``coroutine`` function (``file``, ``line``), ``pid`` (0
without children followed), ``thread``, ``state`` (running, waiting, done,
failed), ``steps``, ``running_ns`` (in its steps), ``waiting_ns`` (suspended
between them), ``start_ns`` (its first step, into the run) and ``awaiting``
(suspended: the coroutines above its own it sits in, innermost first); and
``task_totals``: ``seen``, ``done``, ``failed``, ``going`` (not finished),
``not_listed`` (finished or
going tasks left out of the list), ``not_followed`` (past the replay's
table, or the agent's: no number) and ``unnamed``.
Native counters (ulma.h's ``ULMA_COUNTER``): ``counters``, one object per counter site, in
the order first seen -- ``name``, ``file``, ``line``, ``samples`` (values set), ``last`` (the
value set last), ``min``, ``max``, ``mean``, ``last_ns`` (when the last was set, ns after its
process's program started); with children followed, every process's values of the same site together.
Objects (``--objects``): ``types``, one object per type seen, in the order first seen
-- ``name`` (module.qualname; builtins bare), ``created`` (made while traced), ``freed`` (of
those, destroyed since), ``live`` (the difference), ``freed_untracked`` (destroyed, made before
tracing began or not kept by the agent: apart, never taken from ``live``), ``bytes`` (of the
objects live, in the allocator's size classes: exact to 16 bytes up to 512, above rounded up to a
power of two; null where the mechanism is told no size: the ref tracer), ``by_function``
(``function``: index into functions, null for a function with no row there; ``name``;
``created`` and ``freed`` of the objects it made; ``freed_here``: objects of the type destroyed
while it was on top); and ``objects``: null when not asked for, else ``mechanism`` ("reftracer";
"reftracer-late" where the interpreter does not
tell the ref tracer of every destruction, CPython 3.13.0: those are counted when the object's
address is taken by a new one, so an object gone unseen since may still be counted live;
"allocator" on Python 3.11 and 3.12, which have no ref tracer: the object allocator's blocks, each
typed by its object's header -- objects CPython reuses from its free lists (float, tuple, list,
dict and a few more) are not seen made or destroyed, and one a free list keeps counts as live;
objects made before tracing began are seen destroyed only if the garbage collector tracked them),
``untracked`` (objects whose creator the agent's
table had no room for), ``types_overflow`` (types past 65 534, one row) and ``displaced`` (times
the program's own ref tracer stood in front of ulma's at its end).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TextIO

from ulma.format import files
from ulma.monitor import eventloop
from ulma.monitor.dial import traced_share
from ulma.monitor.profile import CounterStats, EdgeStats, FunctionStats, ProcessInfo, Profile, TypeStats

VERSION = 1
_ITEM = json.JSONEncoder(separators=(",\n   ", ": "))


def asyncio_object(profile: Profile) -> dict[str, Any]:
    """The "asyncio" object (of the report and of each --jsonl line)."""
    listed, cut = eventloop.tasks_listed(profile.tasks)
    totals = profile.task_totals
    return {"loop_idle_ns": eventloop.idle_ns(profile),
            "tasks": [{"name": g.name, "file": g.file, "line": g.line, "tasks": g.tasks,
                       "steps": g.steps, "running_ns": g.running_ns, "awaiting_ns": g.awaiting_ns}
                      for g in eventloop.task_groups(profile)],
            "block_ns": profile.loop_block_ns,
            "blocked": [{"thread": b.thread, "start_ns": b.start_ns, "ns": b.ns,
                         "stack": [{"name": n, "file": f, "line": ln} for n, f, ln in b.stack]}
                        for b in profile.loop_blocks],
            "blocked_more": profile.loop_blocks_over,
            "task_list": [task_object(t) for t in listed],
            "task_totals": {"seen": totals.seen, "done": totals.done, "failed": totals.failed,
                            "going": totals.going,
                            "not_listed": totals.not_listed + cut, "not_followed": totals.not_followed,
                            "unnamed": totals.unnamed}}


def counter_object(c: CounterStats) -> dict[str, Any]:
    return {"name": c.name, "file": c.file, "line": c.line, "samples": c.samples, "last": c.last,
            "min": c.min, "max": c.max, "mean": c.mean, "last_ns": c.last_ns}


def type_object(t: TypeStats) -> dict[str, Any]:
    return {"name": t.name, "created": t.created, "freed": t.freed, "live": t.live,
            "freed_untracked": t.freed_untracked, "bytes": t.bytes,
            "by_function": [{"function": f.function, "name": f.name, "created": f.created, "freed": f.freed,
                             "freed_here": f.freed_here} for f in t.by_function]}


def task_object(t: eventloop.AsyncTask) -> dict[str, Any]:
    return {"number": t.number, "name": t.name, "coroutine": t.coroutine, "file": t.file, "line": t.line,
            "pid": t.pid, "thread": t.thread, "state": t.state, "steps": t.steps,
            "running_ns": t.running_ns, "waiting_ns": t.waiting_ns, "start_ns": t.start_ns,
            "awaiting": list(t.awaiting)}


def _header(profile: Profile) -> dict[str, Any]:
    """The document's fields before "functions" and "edges", in order."""
    return {
        "version": VERSION,
        "python": profile.python,
        "wall_ns": profile.wall_ns,
        "events": profile.events,
        "dropped": profile.dropped,
        "threads": len(profile.threads),
        "untraced_threads": profile.threads_overflow,
        "untraced_events": profile.untraced_events,
        "symbols_lost": profile.symtab_overflow,
        "lost_ns": profile.lost_ns,
        "engine": profile.engine,
        "clock": profile.clock,
        "probe_ns": round(profile.probe_ns, 2),
        "scope_probe_ns": round(profile.scope_probe_ns, 2),
        "scope_end_probe_ns": round(profile.scope_end_probe_ns, 2),
        "overhead_ns": profile.overhead_ns,
        "cpu_readings": profile.split_known,
        "native_calls": profile.native_calls,
        "tool_id": profile.tool_id,
        "hooks_displaced": profile.hooks_displaced,
        "ids_overflow": profile.ids_overflow,
        "forked_children": profile.forked_children,
        "scope": list(profile.scope),
        "dial": None if profile.dial is None else {
            "budget": profile.dial.budget, "estimate": profile.dial.estimate,
            "event_ns": round(profile.dial.event_ns, 2), "priced_at_s": profile.dial.priced_at_s,
            "price_error": profile.dial.price_error, "prices": profile.dial.prices,
            "history": [list(p) for p in profile.dial.history],
            "switched_off": [{"function": sw.name, "fid": sw.fid, "at_s": sw.at_s, "calls": sw.calls,
                              "events_per_s": sw.rate, "back_on_s": sw.back_on_s,
                              "done_mono_ns": sw.done_ns}
                             for sw in profile.dial.switches]},
        "asyncio": asyncio_object(profile),
        "counters": [counter_object(c) for c in profile.counters],
        "objects": profile.objects,
        "types": [type_object(t) for t in profile.types],
        "burst": None if profile.burst is None else {
            "sampled": True, "on_ms": profile.burst.on_ms, "period_ms": profile.burst.period_ms,
            "calls_scaled": "calls seen / the part of the run the function was on"},
    }


def _edge(e: EdgeStats) -> dict[str, Any]:
    return {"caller": e.caller, "callee": e.callee, "calls": e.calls, "resumes": e.resumes,
            "total_ns": e.total_ns}


def _function(f: FunctionStats, known: bool, sampled: int | None = None) -> dict[str, Any]:
    """`sampled`: --burst, the run's wall time (each function's calls are scaled by its traced share)."""
    return {
        "name": f.name, "file": f.file, "line": f.line, "calls": f.calls, "resumes": f.resumes,
        "self_ns": f.self_ns, "total_ns": f.total_ns,
        "cpu_ns": f.cpu_ns if known else None, "wait_ns": f.wait_ns if known else None,
        "wait_blocked_ns": f.wait_blocked_ns, "wait_runnable_ns": f.wait_runnable_ns,
        "overhead_ns": f.overhead_ns, "unmeasured_ns": f.unmeasured_ns,
        "self_cpu_ns": f.self_cpu_ns if known else None, "self_wait_ns": f.self_wait_ns if known else None,
        "self_overhead_ns": f.self_overhead_ns, "call_overhead_ns": f.call_overhead_ns,
        "calls_scaled": None if sampled is None else f.calls / traced_share(f, sampled),
        "native": f.native, "off": f.off, "off_ns": f.off_ns, "untraced_callees": f.untraced_callees,
        "await_ns": f.await_ns if known else None, "self_await_ns": f.self_await_ns if known else None,
        "idle": f.idle, "kind": f.kind,
    }


def _process(p: ProcessInfo, sampled: int | None, edges: bool = True) -> dict[str, Any]:
    row: dict[str, Any] = {"pid": p.pid, "command": p.command, "how": p.how, "status": p.status,
                           "profiled": p.profile is not None}
    if p.profile is not None:
        known = p.profile.split_known
        row.update({"wall_ns": p.profile.wall_ns, "events": p.profile.events, "dropped": p.profile.dropped,
                    "functions": [_function(fn, known, sampled) for fn in p.profile.functions]})
        if edges:
            row["edges"] = [_edge(e) for e in p.profile.edges]
    return row


def write(profile: Profile, path: str) -> None:
    """Writes the document item by item (one function, one edge at a time),
    so that memory does not grow by a copy of the whole document: a program
    that made 300 000 functions has 300 000 rows.  The text is what
    ``json.dump(document, f, indent=1)`` writes, byte for byte."""
    known = profile.split_known
    with files.writing_text(path) as f:  # 0600, no link followed
        head = json.dumps(_header(profile), indent=1)
        f.write(head[:-2])  # without the closing "\n}"
        sampled = profile.wall_ns if profile.burst is not None else None
        rows = (_function(fn, known, sampled) for fn in profile.functions)
        _write_list(f, "functions", rows, last=False)
        _write_list(f, "edges", (_edge(e) for e in profile.edges), last=not profile.processes)
        if profile.processes:  # nested rows: laid out by json itself, one level in
            text = json.dumps([_process(p, sampled) for p in profile.processes], indent=1)
            f.write(',\n "processes": ' + text.replace("\n", "\n ") + "\n")
        f.write("}\n")


def _write_list(f: TextIO, key: str, items: Iterable[dict[str, Any]], *, last: bool) -> None:
    """Writes `,\n "key": [...]` at the document's top level, each item as
    json.dump with indent=1 lays it out two levels deep."""
    f.write(f",\n {json.dumps(key)}: [")
    first = True
    for item in items:
        # items are flat (scalar values, and strings escape their newlines):
        # the fast C encoder with these separators, then the braces' lines
        f.write(("\n  {\n   " if first else ",\n  {\n   ") + _ITEM.encode(item)[1:-1] + "\n  }")
        first = False
    f.write("]" if first else "\n ]")
    if last:
        f.write("\n")
