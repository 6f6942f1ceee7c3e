"""A profile: per-function and per-edge totals with names, in nanoseconds.

Built from a session snapshot (ticks and symbol ids) and the symbol table;
views and exporters read only this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ulma.format.records import Symbol

__all__ = ["EdgeStats", "FunctionStats", "Profile", "Symbol", "ThreadInfo", "build_profile"]


@dataclass(slots=True)
class FunctionStats:
    name: str
    file: str
    line: int
    calls: int
    resumes: int
    self_ns: int
    total_ns: int

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
    slot: int
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
    threads_overflow: int = 0
    symtab_overflow: int = 0

    @property
    def events(self) -> int:
        return sum(t.events for t in self.threads)

    @property
    def dropped(self) -> int:
        return sum(t.dropped for t in self.threads)

    @property
    def lost_ns(self) -> int:
        return sum(t.lost_ns for t in self.threads)


def build_profile(
    symbols: dict[int, Symbol],
    functions: list[tuple[int, int, int, int, int]],
    edges: list[tuple[int, int, int, int, int]],
    ns_per_tick: float,
    *,
    python: str,
    wall_ns: int,
    engine: str,
    clock: str,
) -> Profile:
    """Names the snapshot's ids and converts ticks to ns.  ulma's own
    bootstrap functions (hidden symbols) and the edges touching them are left
    out."""
    profile = Profile(python=python, wall_ns=wall_ns, engine=engine, clock=clock)
    index: dict[int, int] = {}
    for fid, calls, resumes, self_t, total_t in functions:
        sym = symbols.get(fid)
        if sym is not None and sym.hidden:
            continue
        name, file, line = (sym.name, sym.file, sym.line) if sym else (f"<unknown #{fid}>", "?", 0)
        index[fid] = len(profile.functions)
        profile.functions.append(FunctionStats(
            name=name, file=file, line=line, calls=calls, resumes=resumes,
            self_ns=round(self_t * ns_per_tick), total_ns=round(total_t * ns_per_tick),
        ))
    for caller, callee, calls, resumes, total_t in edges:
        if caller in index and callee in index:
            profile.edges.append(EdgeStats(index[caller], index[callee], calls, resumes,
                                           round(total_t * ns_per_tick)))
    return profile
