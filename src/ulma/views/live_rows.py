"""What the live table shows, without the terminal: rows with rates, sorting,
filtering, and a function's callers and callees.  Pure functions of
profiles, so they are tested without a screen."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ulma.monitor.profile import FunctionStats, Profile
from ulma.views import bar, layout, paths
from ulma.views.units import fmt_ns

FuncKey = tuple[str, str, int]  # (qualified name, file, first line): stable across snapshots


def times(f: FunctionStats, clock: str) -> tuple[int, int]:
    """(self, total) on the chosen clock."""
    return (f.self_cpu_ns, f.cpu_ns) if clock == "cpu" else (f.self_ns, f.total_ns)


def shown_clock(profile: Profile, clock: str) -> str:
    """The clock the time columns can show: CPU time needs CPU readings
    (without them, `cpu_ns` is the wall time and must not be shown as CPU)."""
    return clock if profile.split_known else "wall"


def on_clock(f: FunctionStats, clock: str) -> bool:
    """Is f shown on this clock?  On the CPU clock, not if it used no CPU time."""
    return clock != "cpu" or f.cpu_ns > 0


def key_of(f: FunctionStats) -> FuncKey:
    return (f.name, f.file, f.line)


# A function idle for the `i` key: this share of its total (inclusive) time or more was spent
# waiting (blocked or not scheduled), as py-spy hides its idle frames.
IDLE_SHARE = 0.95


def mostly_waiting(f: FunctionStats, split_known: bool) -> bool:
    """Did f spend IDLE_SHARE of its total time or more waiting?  Never
    without CPU readings: waiting is then not told apart from CPU."""
    return split_known and f.total_ns > 0 and f.wait_ns >= IDLE_SHARE * f.total_ns


def row_id(key: FuncKey) -> str:
    """A table row key for a function."""
    return f"{key[1]}:{key[2]}:{key[0]}"


@dataclass(frozen=True, slots=True)
class Row:
    key: FuncKey
    stats: FunctionStats
    rate: float | None  # calls per second since the previous snapshot; None: no previous one
    share: float  # self time (on the row's clock) over the covered wall time, in %
    self_time: int  # self and total on the row's clock (wall or CPU)
    total_time: int
    clock: str = "wall"  # what self_time, total_time, per_call_ns and share count

    @property
    def per_call_ns(self) -> float | None:
        return self.total_time / self.stats.calls if self.stats.calls else None


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int  # 0: takes what the others leave
    value: Callable[[Row], float | str]
    descending: bool = True  # the first press of its key sorts this way
    cpu_label: str = ""  # the label on the CPU clock, for the columns that count time
    drop: int = 0  # on a narrow screen the lowest drops first (0: never; see layout.fit)


# (widths: a header with its sort key and arrow, "cpu total⁵▼", fits)
COLUMNS: tuple[Column, ...] = (
    Column("function", "function", 0, lambda r: r.stats.name.lower(), descending=False),
    Column("calls", "calls", 10, lambda r: r.stats.activations),
    Column("rate", "calls/s", 10, lambda r: r.rate or 0.0, drop=1),
    Column("self", "self", 10, lambda r: r.self_time, cpu_label="cpu self"),
    Column("total", "total", 11, lambda r: r.total_time, cpu_label="cpu total"),
    Column("per_call", "per call", 10, lambda r: r.per_call_ns or 0.0, cpu_label="cpu/call", drop=2),
    Column("share", "%", 6, lambda r: r.share, cpu_label="cpu%"),
)
COLUMN_INDEX = {c.key: i for i, c in enumerate(COLUMNS)}


def fit_columns(width: int) -> tuple[list[int], int, int]:
    """The table in `width` cells (columns and the gaps after them): the
    indexes into COLUMNS shown (the function first), the function column's
    width and the bar's."""
    numbers = [layout.Number(c.key, c.width, c.drop) for c in COLUMNS if c.width]
    fitted = layout.fit(width, numbers)
    shown = [0, *(COLUMN_INDEX[key] for key in fitted.shown)]
    return shown, fitted.name_width, fitted.bar_width


def label(column: Column, clock: str) -> str:
    """A column's header on the clock shown: the time columns say when they count CPU time."""
    return column.cpu_label if clock == "cpu" and column.cpu_label else column.label


def fmt_count(x: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= limit:
            return f"{x / limit:.1f}{suffix}"
    return f"{x:.0f}"


def texts(row: Row) -> tuple[str, ...]:
    """The row's numbers as drawn, in the order of COLUMNS after the name:
    the time columns on the row's clock."""
    f = row.stats
    calls = f"{f.calls:,}" if not f.resumes else f"{f.calls:,}+{f.resumes:,}r"
    per_call = row.per_call_ns
    return (calls, "-" if row.rate is None else fmt_count(row.rate), fmt_ns(row.self_time),
            fmt_ns(row.total_time), "-" if per_call is None else fmt_ns(per_call), f"{row.share:.1f}")


def time_bar(row: Row, split_known: bool, wall_ns: int, width: int,
             plain: bool = False) -> list[tuple[str, str]]:
    """The row's bar: its total time split four ways on the wall clock, its
    CPU time alone on the CPU clock; every row on the scale of `wall_ns`
    (`plain`: in letters, for a screen without colour)."""
    parts = bar.parts_for(split_known, row.clock)
    return bar.render(bar.split_values(row.stats, split_known, row.clock), parts, max(wall_ns, 1), width,
                      plain)


@dataclass(frozen=True, slots=True)
class Baseline:
    """Call counts at one moment, for the next snapshot's calls/s."""

    at_ns: int
    calls: dict[FuncKey, int]


def baseline(profile: Profile, at_ns: int) -> Baseline:
    return Baseline(at_ns, {key_of(f): f.activations for f in profile.functions})


def make_rows(profile: Profile, before: Baseline | None, at_ns: int, clock: str = "wall") -> list[Row]:
    """One row per function; calls/s from `before` (counts absent there
    started at zero: a clear() resets the baseline to an empty one).  On the
    CPU clock (given CPU readings: see shown_clock), functions that used no
    CPU time are left out."""
    clock = shown_clock(profile, clock)
    wall = max(profile.wall_ns, 1)
    dt = (at_ns - before.at_ns) / 1e9 if before is not None else 0.0
    rows = []
    for f in profile.functions:
        if not on_clock(f, clock) or f.idle:  # the event loop waiting: in the header
            continue
        self_time, total_time = times(f, clock)
        key = key_of(f)
        rate = None
        if before is not None and dt > 0:
            rate = max(f.activations - before.calls.get(key, 0), 0) / dt
        rows.append(Row(key, f, rate, 100 * self_time / wall, self_time, total_time, clock))
    return rows


def matches(row: Row, needle: str) -> bool:
    """Case-insensitive substring of the name or of file:line."""
    if not needle:
        return True
    n = needle.lower()
    f = row.stats
    return n in f.name.lower() or n in f"{f.file}:{f.line}".lower()


def ordered(rows: list[Row], column: Column, descending: bool) -> list[Row]:
    """Sorted by the column; ties by name then location, so the order is stable."""
    by_name = sorted(rows, key=lambda r: r.key)
    return sorted(by_name, key=column.value, reverse=descending)


def visible(rows: list[Row], needle: str, column: Column, descending: bool,
            hide_waiting: bool = False, split_known: bool = True) -> list[Row]:
    """The rows shown: those matching the filter, without the mostly-waiting
    ones when they are hidden (key i), sorted."""
    return ordered([r for r in rows if matches(r, needle)
                    and not (hide_waiting and mostly_waiting(r.stats, split_known))], column, descending)


@dataclass(frozen=True, slots=True)
class Link:
    """A caller or callee of the function in focus."""

    key: FuncKey
    label: str  # name  file:line
    calls: int
    total_ns: int  # time in the callee along this edge
    share: float  # total_ns as a share of the focused function's total time, %


def neighbours(profile: Profile, key: FuncKey,
               roots: Sequence[paths.Root] = ()) -> tuple[list[Link], list[Link]]:
    """(callers, callees) of the function `key`, most time first.

    A caller's time is the focused function's time when called from there;
    a callee's time is the callee's time when called from the focused one;
    both as a share of the focused function's total."""
    index = next((i for i, f in enumerate(profile.functions) if key_of(f) == key), None)
    if index is None:
        return [], []
    focus_total = max(profile.functions[index].total_ns, 1)
    callers: list[Link] = []
    callees: list[Link] = []
    for e in profile.edges:
        # A recursive call (caller == callee) is listed on both sides.
        for side, mine, other in ((callers, e.callee, e.caller), (callees, e.caller, e.callee)):
            if mine == index:
                f = profile.functions[other]
                label = f"{f.name}  {paths.location(f.file, f.line, roots)}"
                side.append(Link(key_of(f), label, e.calls + e.resumes, e.total_ns,
                                 100 * e.total_ns / focus_total))

    def most_first(link: Link) -> tuple[int, int, FuncKey]:
        return (-link.total_ns, -link.calls, link.key)
    return sorted(callers, key=most_first), sorted(callees, key=most_first)
