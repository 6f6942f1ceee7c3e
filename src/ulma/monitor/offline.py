"""Profiles from trace files: the same C replay as a live session, fed from
the file's chunks, so ``ulma report run.ulma`` prints what ``ulma run`` did."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ulma import _core
from ulma.format import trace
from ulma.format.records import SYM_TASK
from ulma.monitor import eventloop
from ulma.monitor.profile import Profile, Symbol, ThreadInfo, build_profile


def load_profile(reader: trace.TraceReader, loop_block_ms: float | None = None) -> Profile:
    """`loop_block_ms`: flag an event loop held longer; None: as the run did (its --loop-block,
    kept in META; the default for a trace from before it was kept)."""
    if loop_block_ms is None:
        loop_block_ms = reader.meta.get("loop_block_ms", eventloop.DEFAULT_BLOCK_MS)
    agg = _core.Aggregator()
    # a first rate (META's) for what the replay decides as it goes; waiting is
    # formed at the file's best calibration, read after the chunks (END's)
    agg.set_rate(reader.ns_per_tick() or 1.0)
    symbols: dict[int, Symbol] = {}
    blocks = eventloop.BlockWatch(agg, loop_block_ms * 1e6)
    tasks = eventloop.TaskWatch(agg)
    started = reader.latest("program_start_ticks")
    start_ticks = started if isinstance(started, int) else 0
    blocks.start(reader.ns_per_tick() or 1.0)
    for chunk in reader.chunks():
        if chunk.kind == trace.EVENTS:
            try:
                agg.feed(chunk.thread, chunk.payload)
            except ValueError as exc:
                reader.warnings.append(f"events chunk at byte {chunk.offset} skipped: {exc}")
            # a thread back at the bottom of its stack (ended, or idle) gives its totals to the
            # folded ones, as a live session folds ended threads: memory follows the threads
            # running, not every thread the trace ever had
            agg.fold(chunk.thread)
            blocks.take(symbols, start_ticks, reader.ns_per_tick() or 1.0)
            tasks.take(symbols, start_ticks, reader.ns_per_tick() or 1.0)
        elif chunk.kind == trace.SYMBOLS:
            try:
                defs = trace.unpack_symbols(chunk.payload)
            except trace.TraceError as exc:
                reader.warnings.append(f"symbols chunk at byte {chunk.offset} skipped: {exc}")
                continue
            for s in defs:
                if s.kind == SYM_TASK:  # a task's name: not a function's
                    tasks.symbol(s.id, s.name)
                else:
                    symbols[s.id] = s
            blocks.symbols(defs, reader.ns_per_tick() or 1.0)
    agg.close()
    blocks.take(symbols, start_ticks, reader.ns_per_tick() or 1.0)
    end = reader.end or {}  # every value passed ulma.format.schema
    meta = reader.meta
    if reader.end is None:
        reader.warnings.append("the trace has no end record: the run was cut short "
                               "(figures cover what was written)")
    ns_per_tick = reader.ns_per_tick() or 1.0
    functions, edges, counter_rows, object_rows = agg.snapshot(split=True, rate=ns_per_tick)
    readings = any(f["cpu_readings"] for f in agg.threads())
    profile = build_profile(
        symbols, functions, edges, ns_per_tick,
        python=str(meta.get("python", "?")), wall_ns=end.get("wall_ns", 0),
        engine=str(end.get("engine") or meta.get("engine", "?")), clock=str(meta.get("clock", "?")),
        probe_ns=reader.latest("probe_ns") or 0.0, scope_probe_ns=reader.latest("scope_probe_ns") or 0.0,
        scope_end_probe_ns=reader.latest("scope_end_probe_ns") or 0.0,
        split_known=readings,
        schedstat=reader.latest("schedstat") is True, native_calls=reader.latest("native_calls") is True,
        switched=switched_of(end),
        counters=counter_rows, objects=object_rows,
        clock0=(_int(reader.latest("program_start_ticks")) or _int(meta.get("start_ticks")),
                _int(meta.get("start_ticks")), _int(meta.get("start_mono_ns"))),
    )
    profile.scope = tuple(meta.get("scope", ()))
    profile.loop_block_ns, profile.loop_blocks = blocks.limit_ns, blocks.blocks
    profile.loop_blocks_over = blocks.over
    # tasks still going at the trace's end: until its last event
    going = tasks.take(symbols, start_ticks, ns_per_tick, live=True,
                       now=max((f["last_tick"] for f in agg.threads()), default=0))
    profile.tasks, profile.task_totals = tasks.finished() + going, tasks.snapshot_totals()
    profile.task_totals.not_followed += end.get("tasks_untold", 0)  # the agent's (tasks.c)
    profile.tool_id = end.get("tool_id")
    profile.hooks_displaced = end.get("hooks_displaced", 0)
    profile.forked_children = end.get("forked_children", 0)
    if "objects_mechanism" in end:  # --objects (session.objects_info)
        profile.objects = {key: end.get(f"objects_{key}", 0)
                           for key in ("mechanism", "untracked", "types_overflow", "displaced")}
    dropped = end.get("dropped", {})
    for thread, figures in enumerate(agg.threads()):
        if not figures["events"]:
            continue
        profile.threads.append(ThreadInfo(
            thread=thread, os_tid=0, events=figures["events"],
            dropped=dropped.get(str(thread), 0),
            lost_ns=round(figures["lost_ticks"] * ns_per_tick), unmatched=figures["unmatched"]))
    profile.threads_overflow = end.get("untraced_threads", 0)
    profile.untraced_events = end.get("untraced_events", 0)
    profile.symtab_overflow = end.get("symbols_lost", 0)
    if not profile.wall_ns and profile.threads:  # cut short: from the program's start to its last event
        first = min(f["first_tick"] for f in agg.threads() if f["events"])
        last = max(f["last_tick"] for f in agg.threads() if f["events"])
        started = reader.latest("program_start_ticks")
        if isinstance(started, int) and first < started <= last:
            first = started
        profile.wall_ns = round((last - first) * ns_per_tick)
    return profile



def switched_of(end: Mapping[str, Any]) -> dict[int, tuple[bool, int]]:
    """id -> (off at the end, ns it was off) of the functions switched off while the run was
    recorded, as the END record keeps them."""
    off_ns: Mapping[str, int] = end.get("off_ns", {})
    off_now: Mapping[str, int] = end.get("off_now", {})
    return {int(k): (bool(off_now.get(k)), off_ns.get(k, 0)) for k in {*off_ns, *off_now}}


def _int(value: object) -> int:
    """A META figure that passed the schema, or 0 when it is missing."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
