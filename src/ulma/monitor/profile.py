"""A profile: per-function and per-edge totals with names, in nanoseconds.

Built from a session snapshot (ticks and symbol ids) and the symbol table;
views and exporters read only this.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ulma.format.records import SYM_CFUNC, Symbol

__all__ = ["EdgeStats", "FunctionStats", "Profile", "Symbol", "ThreadInfo", "build_profile"]


@dataclass(slots=True)
class FunctionStats:
    """One function's figures.  Its total time splits four ways -- CPU,
    waiting, call overhead, unmeasured (excluded callees) -- and the parts add
    up to total_ns; its self time splits into the first three.  Waiting
    splits further into blocked and runnable-but-not-scheduled where the
    kernel says (else those are None)."""

    name: str
    file: str
    line: int
    calls: int
    resumes: int
    self_ns: int
    total_ns: int
    cpu_ns: int = 0
    wait_ns: int = 0
    overhead_ns: int = 0
    unmeasured_ns: int = 0
    wait_blocked_ns: int | None = None
    wait_runnable_ns: int | None = None
    self_cpu_ns: int = 0
    self_wait_ns: int = 0
    self_overhead_ns: int = 0
    call_overhead_ns: int = 0  # what its callers spent getting into it (native calls only)
    native: bool = False  # a C function (native calls)

    @property
    def activations(self) -> int:
        """Calls plus resumptions: what cProfile counts as calls."""
        return self.calls + self.resumes


@dataclass(frozen=True, slots=True)
class EdgeStats:
    caller: int  # index into Profile.functions
    callee: int
    calls: int
    resumes: int
    total_ns: int


@dataclass(slots=True)
class ThreadInfo:
    thread: int  # the session's number for it, in order of first event (ring slots are reused)
    os_tid: int
    events: int
    dropped: int
    lost_ns: int
    unmatched: int


@dataclass(slots=True)
class Profile:
    python: str
    wall_ns: int
    engine: str
    clock: str
    functions: list[FunctionStats] = field(default_factory=list)
    edges: list[EdgeStats] = field(default_factory=list)
    threads: list[ThreadInfo] = field(default_factory=list)
    threads_overflow: int = 0  # threads that got no ring: untraced
    untraced_events: int = 0  # their events, counted by the agent
    symtab_overflow: int = 0  # symbol definitions that did not fit the table
    ids_overflow: int = 0  # functions that share the overflow row (every id was taken)
    forked_children: int = 0  # children forked during the run: they ran unprofiled
    split_known: bool = False  # CPU readings were taken: CPU and waiting are told apart
    schedstat: bool = False  # waiting splits into blocked and runnable
    native_calls: bool = False
    probe_ns: float = 0.0  # calibrated cost of one probe
    tool_id: int | None = None  # the sys.monitoring tool id ulma used (None: PEP 523 engine)
    hooks_displaced: int = 0  # times the program's own profile function or evaluator took over ulma's

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


def _split(f: FunctionStats, raw: Sequence[int], k: float, probe_ns: float, schedstat: bool) -> None:
    """Fills f's four-way split from a snapshot's split figures (ticks, and
    probe counts): waiting, then overhead, come out of the time, CPU is the
    rest, so the parts add up; each part is capped by what is left, as the
    attribution of off-CPU time can overshoot by up to one CPU interval."""
    (s_wait, _s_run, s_probe, s_disp, s_segs,
     t_wait, t_run, t_probe, t_disp, t_segs, t_unm, disp_in) = raw
    f.self_wait_ns = min(round(s_wait * k), f.self_ns)
    f.self_overhead_ns = min(round((s_probe + s_disp) * k + s_segs * probe_ns), f.self_ns - f.self_wait_ns)
    f.self_cpu_ns = f.self_ns - f.self_wait_ns - f.self_overhead_ns
    f.unmeasured_ns = min(round(t_unm * k), f.total_ns)
    f.wait_ns = min(round(t_wait * k), f.total_ns - f.unmeasured_ns)
    f.overhead_ns = min(round((t_probe + t_disp) * k + t_segs * probe_ns),
                        f.total_ns - f.unmeasured_ns - f.wait_ns)
    f.cpu_ns = f.total_ns - f.unmeasured_ns - f.wait_ns - f.overhead_ns
    if schedstat:
        f.wait_runnable_ns = min(round(t_run * k), f.wait_ns)
        f.wait_blocked_ns = f.wait_ns - f.wait_runnable_ns
    f.call_overhead_ns = round(disp_in * k)


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
    split_known: bool = False,
    schedstat: bool = False,
    native_calls: bool = False,
) -> Profile:
    """Names the snapshot's ids and converts ticks to ns.  ulma's own
    bootstrap functions (hidden symbols), excluded functions (their time is
    their callers' unmeasured time) and the edges touching them are left out.
    `functions` rows are (id, calls, resumes, self, total), with the split
    figures after them when the snapshot was taken with split=True."""
    profile = Profile(python=python, wall_ns=wall_ns, engine=engine, clock=clock,
                      split_known=split_known, schedstat=schedstat and split_known,
                      native_calls=native_calls, probe_ns=probe_ns)
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
        if len(row) > 5:
            _split(f, row[5:], ns_per_tick, probe_ns, profile.schedstat)
        else:
            f.cpu_ns, f.self_cpu_ns = f.total_ns, f.self_ns
        profile.functions.append(f)
    for caller, callee, calls, resumes, total_t in edges:
        a = index[caller] if caller < len(index) else 0
        b = index[callee] if callee < len(index) else 0
        if a and b:
            profile.edges.append(EdgeStats(a - 1, b - 1, calls, resumes, round(total_t * ns_per_tick)))
    return profile
