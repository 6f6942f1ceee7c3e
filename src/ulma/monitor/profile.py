"""A profile: per-function and per-edge totals with names, in nanoseconds.

Built from a session snapshot (ticks and symbol ids) and the symbol table;
views and exporters read only this.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence

from ulma.format.plain import Frozen, Plain
from ulma.format.records import (
    OBJ_MAX_ROWS,
    OBJ_NO_CREATOR,
    OBJ_PAST_ROWS,
    SYM_CFUNC,
    SYM_MARK,
    SYM_SCOPE,
    TYPE_SYMBOL_BASE,
    Symbol,
)
from ulma.monitor import eventloop

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ulma.monitor.dial import BurstState, DialState

__all__ = ["CounterStats", "EdgeStats", "FunctionStats", "ProcessInfo", "Profile", "Symbol", "ThreadInfo",
           "TypeFunction", "TypeStats", "build_profile"]

NO_CREATOR = OBJ_NO_CREATOR  # made before tracing began, or not kept by the agent
# the one type row that holds the objects of (function, type) pairs past the replay's table limit
PAST_ROWS_NAME = f"<objects of (function, type) pairs past {OBJ_MAX_ROWS:,}>"


class FunctionStats(Plain):
    """One function's figures.  Its total time splits four ways -- CPU,
    waiting, call overhead, unmeasured (excluded callees) -- and the parts add
    up to total_ns; its self time splits into the first three.  Waiting
    splits further into blocked and runnable-but-not-scheduled where the
    kernel says (else those are None)."""

    __slots__ = (
        "await_ns",
        "call_overhead_ns",
        "calls",
        "coroutine",
        "cpu_ns",
        "fid",
        "file",
        "idle",
        "kind",
        "line",
        "name",
        "native",
        "off",
        "off_ns",
        "overhead_ns",
        "resumes",
        "self_await_ns",
        "self_cpu_ns",
        "self_ns",
        "self_overhead_ns",
        "self_wait_ns",
        "total_ns",
        "unmeasured_ns",
        "untraced_callees",
        "wait_blocked_ns",
        "wait_ns",
        "wait_runnable_ns",
    )

    name: str
    file: str
    line: int
    calls: int
    resumes: int
    self_ns: int
    total_ns: int
    cpu_ns: int
    wait_ns: int
    overhead_ns: int
    unmeasured_ns: int
    wait_blocked_ns: int | None
    wait_runnable_ns: int | None
    self_cpu_ns: int
    self_wait_ns: int
    self_overhead_ns: int
    call_overhead_ns: int  # what its callers spent getting into it (native calls only)
    # a coroutine's time suspended in `await` (part of its waiting): in all,
    # and the part not awaiting another coroutine (part of its self waiting)
    await_ns: int
    self_await_ns: int
    native: bool  # a C function (native calls)
    idle: bool  # an event loop waiting with nothing ready (monitor/eventloop.py)
    # "python", "c" (a C function, native calls), "scope" or "mark" (a native scope's or mark's
    # site, ulma.h / ulma.phases: a mark's calls are its instants, of no length)
    kind: str
    coroutine: bool  # called as a coroutine (async def) at least once
    fid: int  # the session's id of the function (0: not known)
    off: bool  # switched off now (the control channel): its counts stopped
    off_ns: int  # how long it was switched off so far (0: never)
    # a callee of it was switched off for a while: its self time then includes
    # that callee's time, which was not measured (never shown as its own CPU
    # without this mark)
    untraced_callees: bool

    def __init__(self, name: str, file: str, line: int, calls: int, resumes: int, self_ns: int,
                 total_ns: int, cpu_ns: int = 0, wait_ns: int = 0, overhead_ns: int = 0,
                 unmeasured_ns: int = 0, wait_blocked_ns: int | None = None,
                 wait_runnable_ns: int | None = None, self_cpu_ns: int = 0, self_wait_ns: int = 0,
                 self_overhead_ns: int = 0, call_overhead_ns: int = 0, native: bool = False) -> None:
        self.name = name
        self.file = file
        self.line = line
        self.calls = calls
        self.resumes = resumes
        self.self_ns = self_ns
        self.total_ns = total_ns
        self.cpu_ns = cpu_ns
        self.wait_ns = wait_ns
        self.overhead_ns = overhead_ns
        self.unmeasured_ns = unmeasured_ns
        self.wait_blocked_ns = wait_blocked_ns
        self.wait_runnable_ns = wait_runnable_ns
        self.self_cpu_ns = self_cpu_ns
        self.self_wait_ns = self_wait_ns
        self.self_overhead_ns = self_overhead_ns
        self.call_overhead_ns = call_overhead_ns
        self.await_ns = 0
        self.self_await_ns = 0
        self.native = native
        self.idle = False
        self.kind = "c" if native else "python"
        self.coroutine = False
        self.fid = 0
        self.off = False
        self.off_ns = 0
        self.untraced_callees = False

    @property
    def activations(self) -> int:
        """Calls plus resumptions: what cProfile counts as calls."""
        return self.calls + self.resumes


class EdgeStats(Frozen):
    __slots__ = ("callee", "caller", "calls", "resumes", "total_ns")

    caller: int  # index into Profile.functions
    callee: int
    calls: int
    resumes: int
    total_ns: int

    def __init__(self, caller: int, callee: int, calls: int, resumes: int, total_ns: int) -> None:
        object.__setattr__(self, "caller", caller)
        object.__setattr__(self, "callee", callee)
        object.__setattr__(self, "calls", calls)
        object.__setattr__(self, "resumes", resumes)
        object.__setattr__(self, "total_ns", total_ns)


class CounterStats(Plain):
    """A native counter's site (ulma.h's ULMA_COUNTER): the values the program set there, every
    thread's (and, with children followed, every process's) together."""

    __slots__ = ("file", "last", "last_mono_ns", "last_ns", "line", "max", "mean", "min", "name", "samples")

    name: str
    file: str
    line: int
    samples: int  # values set
    last: int  # the one set last
    min: int
    max: int
    mean: float
    last_ns: int  # when the last one was set: ns since its process's program started
    last_mono_ns: int  # the same on CLOCK_MONOTONIC (processes compare by it)

    def __init__(self, name: str, file: str, line: int, samples: int, last: int, min: int, max: int,
                 mean: float, last_ns: int = 0, last_mono_ns: int = 0) -> None:
        self.name = name
        self.file = file
        self.line = line
        self.samples = samples
        self.last = last
        self.min = min
        self.max = max
        self.mean = mean
        self.last_ns = last_ns
        self.last_mono_ns = last_mono_ns


class TypeFunction(Plain):
    """One function's share of a type's objects (--objects)."""

    __slots__ = ("created", "freed", "freed_here", "function", "name")

    function: int | None  # index into Profile.functions (None: a function with no row there)
    name: str
    created: int  # objects of the type it made
    freed: int  # of those, destroyed since (wherever that happened)
    freed_here: int  # objects of the type destroyed while it was on top (whoever made them)

    def __init__(self, function: int | None, name: str, created: int = 0, freed: int = 0,
                 freed_here: int = 0) -> None:
        self.function = function
        self.name = name
        self.created = created
        self.freed = freed
        self.freed_here = freed_here


class TypeStats(Plain):
    """Objects of one type (--objects): made while traced, destroyed of those, still live; and
    destructions of objects made before tracing began (or not kept by the agent), apart."""

    __slots__ = ("by_function", "bytes", "created", "freed", "freed_untracked", "name")

    name: str  # module.qualname (builtins: the bare name)
    created: int
    freed: int
    freed_untracked: int
    bytes: int | None  # of the objects live, as the allocator's size classes (None: not told)
    by_function: list[TypeFunction]

    def __init__(self, name: str, created: int = 0, freed: int = 0, freed_untracked: int = 0) -> None:
        self.name = name
        self.created = created
        self.freed = freed
        self.freed_untracked = freed_untracked
        self.bytes = None
        self.by_function = []

    @property
    def live(self) -> int:
        return self.created - self.freed


class ThreadInfo(Plain):
    __slots__ = ("dropped", "events", "lost_ns", "os_tid", "pid", "thread", "unmatched")

    thread: int  # the session's number for it, in order of first event (ring slots are reused)
    os_tid: int
    events: int
    dropped: int
    lost_ns: int
    unmatched: int
    pid: int  # the process it ran in (0: not known)

    def __init__(self, thread: int, os_tid: int, events: int, dropped: int, lost_ns: int,
                 unmatched: int, pid: int = 0) -> None:
        self.pid = pid
        self.thread = thread
        self.os_tid = os_tid
        self.events = events
        self.dropped = dropped
        self.lost_ns = lost_ns
        self.unmatched = unmatched


class ProcessInfo(Plain):
    """One process of the run, as the report's per-process rows show it."""

    __slots__ = ("command", "how", "pid", "profile", "status")

    pid: int
    command: str
    how: str  # "main", "fork", "exec"
    status: str  # "exit 0", "killed by SIGKILL", "ended", "still running", "unprofiled: ..."
    profile: Profile | None  # None: unprofiled

    def __init__(self, pid: int, command: str, how: str, status: str, profile: Profile | None) -> None:
        self.pid = pid
        self.command = command
        self.how = how
        self.status = status
        self.profile = profile



class Profile(Plain):
    __slots__ = ("burst", "clock", "counters", "dial", "edges", "engine", "forked_children", "functions",
                 "hooks_displaced", "ids_overflow", "loop_block_ns", "loop_blocks", "loop_blocks_over",
                 "native_calls", "objects", "probe_ns", "processes", "python", "schedstat", "scope",
                 "scope_end_probe_ns", "scope_probe_ns", "split_known", "symtab_overflow", "task_totals",
                 "tasks", "threads", "threads_overflow", "tool_id", "types", "untraced_events", "wall_ns")

    python: str
    wall_ns: int
    engine: str
    clock: str
    functions: list[FunctionStats]
    edges: list[EdgeStats]
    counters: list[CounterStats]  # native counters (ulma.h), in the order first seen
    types: list[TypeStats]  # --objects: objects per type, in the order first seen
    # --objects: how objects were seen ("reftracer"; None: not asked for), objects whose creator the
    # agent could not keep, types past its limit, and times another ref tracer stood in ulma's way
    objects: dict[str, int | str] | None
    threads: list[ThreadInfo]
    threads_overflow: int  # threads that got no ring: untraced
    untraced_events: int  # their events, counted by the agent
    symtab_overflow: int  # symbol definitions that did not fit the table
    ids_overflow: int  # functions that share the overflow row (every id was taken)
    forked_children: int  # children forked during the run: they ran unprofiled
    split_known: bool  # CPU readings were taken: CPU and waiting are told apart
    schedstat: bool  # waiting splits into blocked and runnable
    native_calls: bool
    probe_ns: float  # calibrated cost of one probe
    # calibrated cost of a gap closed by a native scope's begin (mark, counter) record, and
    # by its end record (ulma.h)
    scope_probe_ns: float
    scope_end_probe_ns: float
    tool_id: int | None  # the sys.monitoring tool id ulma used (None: PEP 523 engine)
    hooks_displaced: int  # times the program's own profile function or evaluator took over ulma's
    # --only / --exclude patterns in effect ("--only P", "--exclude P"): the functions they
    # leave out are not traced, and their time is in their callers' self time
    scope: tuple[str, ...]
    dial: DialState | None  # --budget: what the dial switched off, and the estimated overhead
    burst: BurstState | None  # --burst: the counts are sampled, over this share of the run
    # the run's processes when children were followed (the program first); the functions,
    # edges and threads are then every profiled process's, the same function added up
    processes: list[ProcessInfo]
    # asyncio (monitor/eventloop.py): callbacks and task steps that held an event loop past
    # loop_block_ns (0: not watched), and how many more were only counted
    loop_block_ns: float
    loop_blocks: list[eventloop.LoopBlock]
    loop_blocks_over: int
    # asyncio tasks one by one: those still going and the finished ones kept (eventloop.TaskWatch)
    tasks: list[eventloop.AsyncTask]
    task_totals: eventloop.TaskTotals

    def __init__(self, python: str, wall_ns: int, engine: str, clock: str,
                 functions: list[FunctionStats] | None = None, edges: list[EdgeStats] | None = None,
                 threads: list[ThreadInfo] | None = None, threads_overflow: int = 0,
                 untraced_events: int = 0, symtab_overflow: int = 0, ids_overflow: int = 0,
                 forked_children: int = 0,
                 split_known: bool = False, schedstat: bool = False, native_calls: bool = False,
                 probe_ns: float = 0.0, tool_id: int | None = None, hooks_displaced: int = 0) -> None:
        self.python = python
        self.wall_ns = wall_ns
        self.engine = engine
        self.clock = clock
        self.functions = [] if functions is None else functions
        self.edges = [] if edges is None else edges
        self.counters = []
        self.types = []
        self.objects = None
        self.threads = [] if threads is None else threads
        self.threads_overflow = threads_overflow
        self.untraced_events = untraced_events
        self.symtab_overflow = symtab_overflow
        self.ids_overflow = ids_overflow
        self.forked_children = forked_children
        self.split_known = split_known
        self.schedstat = schedstat
        self.native_calls = native_calls
        self.probe_ns = probe_ns
        self.scope_probe_ns = 0.0
        self.scope_end_probe_ns = 0.0
        self.tool_id = tool_id
        self.hooks_displaced = hooks_displaced
        self.scope = ()
        self.dial = None
        self.burst = None
        self.processes = []
        self.loop_block_ns = 0.0
        self.loop_blocks = []
        self.loop_blocks_over = 0
        self.tasks = []
        self.task_totals = eventloop.TaskTotals()

    @property
    def overhead_ns(self) -> int:
        """Call overhead (probe cost included) taken out of the functions' CPU time."""
        return sum(f.self_overhead_ns for f in self.functions)

    @property
    def events(self) -> int:
        return sum(t.events for t in self.threads)

    @property
    def dropped(self) -> int:
        return sum(t.dropped for t in self.threads)

    @property
    def lost_ns(self) -> int:
        return sum(t.lost_ns for t in self.threads)


def _split(f: FunctionStats, raw: Sequence[int], k: float, probe_ns: float, schedstat: bool,
           scope_ns: tuple[float, float]) -> None:
    """Fills f's four-way split from a snapshot's split figures (ticks, and
    probe counts): waiting, then overhead, come out of the time, CPU is the
    rest, so the parts add up; each part is capped by what is left, as the
    attribution of off-CPU time can overshoot by up to one CPU interval."""
    (s_wait, _s_run, s_probe, s_disp, s_segs,
     t_wait, t_run, t_probe, t_disp, t_segs, t_unm, disp_in, s_await, t_await, coro_calls,
     s_bsegs, s_esegs, t_bsegs, t_esegs) = raw
    scope_b, scope_e = scope_ns
    f.self_wait_ns = min(round(s_wait * k), f.self_ns)
    f.self_overhead_ns = min(round((s_probe + s_disp) * k + s_segs * probe_ns + s_bsegs * scope_b
                                   + s_esegs * scope_e),
                             f.self_ns - f.self_wait_ns)
    f.self_cpu_ns = f.self_ns - f.self_wait_ns - f.self_overhead_ns
    f.unmeasured_ns = min(round(t_unm * k), f.total_ns)
    f.wait_ns = min(round(t_wait * k), f.total_ns - f.unmeasured_ns)
    f.overhead_ns = min(round((t_probe + t_disp) * k + t_segs * probe_ns + t_bsegs * scope_b
                              + t_esegs * scope_e),
                        f.total_ns - f.unmeasured_ns - f.wait_ns)
    f.cpu_ns = f.total_ns - f.unmeasured_ns - f.wait_ns - f.overhead_ns
    if schedstat:
        f.wait_runnable_ns = min(round(t_run * k), f.wait_ns)
        f.wait_blocked_ns = f.wait_ns - f.wait_runnable_ns
    f.call_overhead_ns = round(disp_in * k)
    # a coroutine suspended in await (in its waiting already, as blocked:
    # not runnable, though its thread ran other code meanwhile)
    f.await_ns = min(round(t_await * k), f.wait_ns)
    f.self_await_ns = min(round(s_await * k), f.self_wait_ns)
    f.coroutine = coro_calls > 0


_KINDS = {SYM_CFUNC: "c", SYM_SCOPE: "scope", SYM_MARK: "mark"}


def build_profile(
    symbols: dict[int, Symbol],
    functions: Iterable[Sequence[int]],
    edges: Iterable[tuple[int, int, int, int, int]],
    ns_per_tick: float,
    *,
    python: str,
    wall_ns: int,
    engine: str,
    clock: str,
    probe_ns: float = 0.0,
    scope_probe_ns: float = 0.0,
    scope_end_probe_ns: float = 0.0,
    split_known: bool = False,
    schedstat: bool = False,
    native_calls: bool = False,
    switched: dict[int, tuple[bool, int]] | None = None,
    counters: Iterable[tuple[int, int, int, int, int, float, int]] = (),
    objects: Iterable[tuple[int, int, int, int, int, int, int]] = (),
    clock0: tuple[int, int, int] = (0, 0, 0),
) -> Profile:
    """Names the snapshot's ids and converts ticks to ns.  ulma's own
    bootstrap functions (hidden symbols), excluded functions (their time is
    their callers' unmeasured time) and the edges touching them are left out.
    `functions` rows are (id, calls, resumes, self, total), with the split
    figures after them when the snapshot was taken with split=True.
    `switched`: id -> (off now, ns it was off) of the functions switched
    through the control channel; their callers get `untraced_callees`.
    `counters` rows are a snapshot's (id, values, last, min, max, mean, tick
    of the last); `clock0` is (the ticks the program started at, the
    session's start ticks, its start on CLOCK_MONOTONIC in ns)."""
    profile = Profile(python=python, wall_ns=wall_ns, engine=engine, clock=clock,
                      split_known=split_known, schedstat=schedstat and split_known,
                      native_calls=native_calls, probe_ns=probe_ns)
    profile.scope_probe_ns, profile.scope_end_probe_ns = scope_probe_ns, scope_end_probe_ns
    index = array("i")  # id -> row + 1 (0: none); ids are small, a dict would cost more
    for row in functions:
        fid, calls, resumes, self_t, total_t = row[:5]
        sym = symbols.get(fid)
        if sym is not None and (sym.hidden or sym.unmeasured):
            continue
        name, file, line = (sym.name, sym.file, sym.line) if sym else (f"<unknown #{fid}>", "?", 0)
        if fid >= len(index):
            index.frombytes(bytes(index.itemsize * max(fid + 1 - len(index), len(index))))
        index[fid] = len(profile.functions) + 1
        f = FunctionStats(
            name=name, file=file, line=line, calls=calls, resumes=resumes,
            self_ns=round(self_t * ns_per_tick), total_ns=round(total_t * ns_per_tick),
            native=sym is not None and sym.kind == SYM_CFUNC,
        )
        if sym is not None:
            f.kind = _KINDS.get(sym.kind, f.kind)
        if len(row) > 5:
            _split(f, row[5:], ns_per_tick, probe_ns, profile.schedstat, (scope_probe_ns, scope_end_probe_ns))
        else:
            f.cpu_ns, f.self_cpu_ns = f.total_ns, f.self_ns
        f.fid = fid
        if switched and fid in switched:
            f.off, f.off_ns = switched[fid]
        profile.functions.append(f)
    for caller, callee, calls, resumes, total_t in edges:
        a = index[caller] if caller < len(index) else 0
        b = index[callee] if callee < len(index) else 0
        if a and b:
            profile.edges.append(EdgeStats(a - 1, b - 1, calls, resumes, round(total_t * ns_per_tick)))
            if switched and callee in switched and switched[callee][1] > 0:
                profile.functions[a - 1].untraced_callees = True
    program_ticks, start_ticks, start_mono_ns = clock0
    for site, samples, last, low, high, mean, tick in counters:
        sym = symbols.get(site)
        name, file, line = (sym.name, sym.file, sym.line) if sym else (f"<unknown counter #{site}>", "?", 0)
        profile.counters.append(CounterStats(name, file, line, samples, last, low, high, mean,
                                             round(max(tick - program_ticks, 0) * ns_per_tick),
                                             start_mono_ns + round(max(tick - start_ticks, 0) * ns_per_tick)))
    _types(profile, symbols, objects, index)
    eventloop.mark_idle(profile)
    return profile


def _types(profile: Profile, symbols: dict[int, Symbol],
           rows: Iterable[tuple[int, int, int, int, int, int, int]], index: array[int]) -> None:
    """Per type, from the (function, type, made, destroyed of those, destroyed in it, bytes made,
    bytes of those destroyed) rows; a type's bytes where the records told sizes."""
    by_type: dict[int, TypeStats] = {}
    shares: dict[tuple[int, int], TypeFunction] = {}
    for fid, tid, created, freed, freed_here, bytes_made, bytes_freed in rows:
        if fid == OBJ_PAST_ROWS:  # (a crafted trace, or a program far past any real one's pairs)
            t = by_type.get(-1)
            if t is None:
                t = by_type[-1] = TypeStats(PAST_ROWS_NAME)
                profile.types.append(t)
            t.created += created
            t.freed += freed
            continue
        t = by_type.get(tid)
        if t is None:
            sym = symbols.get(TYPE_SYMBOL_BASE + tid)
            t = by_type[tid] = TypeStats(sym.name if sym else f"<unknown type #{tid}>")
            profile.types.append(t)
        if fid == NO_CREATOR:
            t.freed_untracked += freed
            continue
        t.created += created
        t.freed += freed
        if bytes_made:
            t.bytes = (t.bytes or 0) + bytes_made - bytes_freed
        row = index[fid] - 1 if fid < len(index) and index[fid] else None
        share = shares.get((tid, fid))
        if share is None:
            sym = symbols.get(fid)
            name = (profile.functions[row].name if row is not None
                    else sym.name if sym is not None else "<no Python frame>" if fid == 0 else f"#{fid}")
            share = shares[tid, fid] = TypeFunction(row, name)
            t.by_function.append(share)
        share.created += created
        share.freed += freed
        share.freed_here += freed_here
