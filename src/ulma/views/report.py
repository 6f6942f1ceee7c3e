"""The end-of-run report: a table of functions sorted by self time (wall or
CPU), each with its total time drawn as a bar split four ways, and the
figures that say how far to trust it (events, drops, lost time, the probe
cost taken out).

The table is laid out for the width it is printed in (layout.fit): at 80
columns the path beside each name is shortened and per call gives way, the
% column and the bar stay.  A name is never cut: one too long for its column
wraps.  Printed without colour (piped, NO_COLOR, TERM=dumb) the bar is
drawn in letters (bar.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ulma.monitor import eventloop
from ulma.monitor.dial import traced_share
from ulma.monitor.profile import FunctionStats, Profile
from ulma.views import bar, layout, paths
from ulma.views.live_rows import on_clock, times
from ulma.views.units import fmt_bytes, fmt_ns

BAR_WIDTH = layout.BAR_MAX
PIPED_WIDTH = 180  # the report's width when not printed on a terminal (and COLUMNS is not set)
GAP = 3  # cells between two columns of the table: a padding cell, the (blank) rule, a padding cell


def location(f: FunctionStats, where: tuple[paths.Root, ...] | None = None) -> str:
    """file:line, short (paths.short): relative to the working directory, a
    package or the standard library."""
    if f.native:
        return "(C)"
    return paths.location(f.file, f.line, paths.roots(os.getcwd()) if where is None else where)


def ranked(profile: Profile, clock: str = "wall") -> list[FunctionStats]:
    """Most self time first, on the clock asked for; on the CPU clock,
    functions that used none are left out."""
    rows = [f for f in profile.functions if on_clock(f, clock) and not f.idle]
    return sorted(rows, key=lambda f: (-times(f, clock)[0], f.name))


def split_bar(f: FunctionStats, profile: Profile, width: int = BAR_WIDTH, plain: bool = False) -> Text:
    """f's total time as a box split four ways, to the scale of the run
    (`plain`: in letters, for output without colour)."""
    known = profile.split_known
    pieces = bar.render(bar.split_values(f, known), bar.parts_for(known), max(profile.wall_ns, 1), width,
                        plain)
    text = Text()
    for piece, style in pieces:
        text.append(piece, style=style)
    return text


@dataclass(frozen=True, slots=True)
class _Line:
    f: FunctionStats
    numbers: dict[str, str]  # by column key


# (key, header, drop): the numbers after the name; on a narrow page the lowest drop goes first
_NUMBERS = (("calls", "calls", 0), ("self", "self", 0), ("total", "total", 0), ("per_call", "per call", 1),
            ("share", "%", 0))


def build_table(profile: Profile, limit: int, clock: str = "wall", width: int = PIPED_WIDTH,
                plain: bool = False, where: tuple[paths.Root, ...] | None = None) -> Table:
    """The functions with the most self time in a table `width` cells wide."""
    where = paths.roots(os.getcwd()) if where is None else where
    wall = max(profile.wall_ns, 1)
    lines = []
    for f in ranked(profile, clock)[:limit]:
        self_t, total_t = times(f, clock)
        lines.append(_Line(f, {
            "calls": str(f.calls) if not f.resumes else f"{f.calls}+{f.resumes}r",
            "self": fmt_ns(self_t) + (UNTRACED_MARK if f.untraced_callees else ""),
            "total": fmt_ns(total_t),
            "per_call": fmt_ns(total_t / f.calls) if f.calls else "-",
            "share": f"{100 * self_t / wall:.1f}"}))
    label = "cpu " if clock == "cpu" else ""
    headers = {key: f"{label}{head}" if key in ("self", "total") else head for key, head, _ in _NUMBERS}
    widths = {key: max([len(headers[key]), *(len(line.numbers[key]) for line in lines)])
              for key, _, _ in _NUMBERS}
    # layout.fit counts a gap after every column; the table has none after its last
    fitted = layout.fit(width + GAP, [layout.Number(key, widths[key], drop) for key, _, drop in _NUMBERS],
                        gap=GAP)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
    table.add_column("function", width=fitted.name_width, overflow="fold")
    for key in fitted.shown:
        table.add_column(headers[key], justify="right", no_wrap=True, width=widths[key])
    split = "time split" if fitted.bar_width >= len("time split") else "split"
    table.add_column(split, no_wrap=True, width=fitted.bar_width)
    for line in lines:
        table.add_row(_name(line.f, fitted.name_width, where),
                      *(line.numbers[key] for key in fitted.shown),
                      split_bar(line.f, profile, fitted.bar_width, plain))
    return table


def _name(f: FunctionStats, width: int, where: tuple[paths.Root, ...]) -> Text:
    """The name whole (wrapped if longer than the column), then where it is,
    shortened to the room left (paths.elide), then whether it was switched off."""
    name = Text(f.name, style="bold")
    off = f"  {off_words(f)}" if f.off_ns else ""
    room = width - len(f.name) - len(off) - 2
    place = "(C)" if f.native else paths.elide(location(f, where), room)
    if place and room > 0:
        name.append(f"  {place}", style="dim")
    if off:
        name.append(off, style="bold magenta")
    return name


# after a self time that includes the time of callees switched off (not measured)
UNTRACED_MARK = "*"


def off_words(f: FunctionStats) -> str:
    """A function switched off through the control channel: off now or not,
    and for how long it was; its counts cover only the time it was on."""
    return f"{'off' if f.off else 'was off'} {fmt_ns(f.off_ns)}"


def scope_lines(profile: Profile) -> list[Text]:
    """What was not traced, and where its time went."""
    lines = []
    if any(f.untraced_callees for f in profile.functions):
        lines.append(Text(f"{UNTRACED_MARK} self time includes callees while they were switched off "
                          "(their time was not measured, and is not this function's own CPU)",
                          style="bold magenta"))
    if any(f.off_ns for f in profile.functions):
        lines.append(Text("off: switched off while running (key x); its counts cover only the time "
                          "it was on", style="magenta"))
    if profile.scope:
        lines.append(Text(f"traced: {' '.join(profile.scope)} -- the functions left out were not "
                          "traced: their time is in their callers' self time, not measured apart",
                          style="bold magenta"))
    return lines


def counter_lines(profile: Profile, limit: int = 10) -> list[Text]:
    """Native counters (ULMA_COUNTER): per site, its last value and what it went through."""
    counters = profile.counters
    if not counters:
        return []
    lines = [Text(f"counters {len(counters)} (ULMA_COUNTER): last value, least, most, mean, values set",
                  style="bold")]
    for c in counters[:limit]:
        row = Text(f"  {c.name}", style="bold")
        row.append(f" ({c.file.rsplit('/', 1)[-1]}:{c.line}): ")
        row.append(f"{c.last:,}", style="bold")
        row.append(f" at {fmt_ns(c.last_ns)}; {c.min:,} .. {c.max:,}, mean {c.mean:,.6g}, "
                   f"{c.samples:,} values")
        lines.append(row)
    if len(counters) > limit:
        lines.append(Text(f"  ({len(counters) - limit} more in --json)", style="dim"))
    return lines


def type_lines(profile: Profile, limit: int = 10) -> list[Text]:
    """--objects: the types with the most objects live, and who made them."""
    if profile.objects is None:
        return []
    types = sorted(profile.types, key=lambda t: (-t.live, -t.created))
    lines = [Text(f"objects ({profile.objects['mechanism']}): {len(types)} types; live, made, destroyed of "
                  "those, and the function that made most", style="bold")]
    for t in types[:limit]:
        row = Text(f"  {t.name}", style="bold")
        row.append(f": {t.live:,} live" + (f" ({fmt_bytes(t.bytes)})" if t.bytes is not None else "") +
                   f", {t.created:,} made, {t.freed:,} destroyed")
        if t.freed_untracked:
            row.append(f" (+{t.freed_untracked:,} made before tracing)", style="dim")
        top = max(t.by_function, key=lambda f: f.created, default=None)
        if top is not None and top.created:
            row.append(f"; most by {top.name} ({top.created:,} made, {top.created - top.freed:,} live)")
        lines.append(row)
    if len(types) > limit:
        lines.append(Text(f"  ({len(types) - limit} more in --json)", style="dim"))
    lost = profile.objects
    if lost["mechanism"] == "reftracer-late":
        lines.append(Text("  this Python does not tell ulma of every object destroyed (CPython 3.13.0's eval "
                          "loop): those are counted when their memory is taken again, so an object gone "
                          "unseen since may still be counted live", style="yellow"))
    if lost["mechanism"] == "allocator":
        lines.append(Text("  Python 3.11/3.12 (no ref tracer): counted from the object allocator's blocks; "
                          "objects CPython reuses from its free lists (float, tuple, list, dict, ...) are "
                          "not seen made or destroyed, and one a free list keeps counts as live",
                          style="yellow"))
    if lost["untracked"] or lost["types_overflow"] or lost["displaced"]:
        lines.append(Text(f"  objects whose maker was not kept: {lost['untracked']:,}; types past the limit: "
                          f"{lost['types_overflow']:,}; the program's own ref tracer in front of ulma's: "
                          f"{lost['displaced']}", style="bold red"))
    return lines


def dial_lines(profile: Profile) -> list[Text]:
    """--budget: what the dial switched off (with its exact count up to then)
    and the overhead it estimated over the run."""
    dial = profile.dial
    if dial is None:
        return []
    lines = [Text(f"dial: budget {dial.budget:g}% -- switched off {len(dial.switches)} time(s), "
                  f"{dial.off_now} off at the end; estimated overhead now {dial.estimate:.1f}%",
                  style="bold magenta")]
    if dial.priced_at_s is not None:
        lines.append(Text(f"  an event priced at {dial.event_ns:.1f} ns: the median of {dial.prices} "
                          "measurements of what switching a function off saves, made beside the run "
                          f"(the start-up probe cost before {dial.priced_at_s:.2f} s)", style="dim"))
    else:
        why = f": {dial.price_error}" if dial.price_error else ""
        lines.append(Text(f"  an event priced at the start-up probe cost {dial.event_ns:.1f} ns "
                          f"(no measured price{why})", style="dim"))
    for sw in dial.switches:
        count = "?" if sw.calls is None else f"{sw.calls:,}"
        back = f", on again at {sw.back_on_s:.2f} s" if sw.back_on_s is not None else ""
        lines.append(Text(f"  off at {sw.at_s:.2f} s: {sw.name}  {count} calls up to then "
                          f"({sw.rate:,.0f} events/s){back}"))
    if dial.history:
        step = max(len(dial.history) // 8, 1)
        points = "  ".join(f"{t:.2f}s {p:.1f}%" for t, p in dial.history[::step])
        lines.append(Text(f"  estimated overhead over time: {points}", style="dim"))
    return lines


BURST_ROWS = 15


def burst_lines(profile: Profile) -> list[Text]:
    """--burst: the counts are sampled; estimates for the whole run beside them."""
    burst = profile.burst
    if burst is None:
        return []
    lines = [Text(f"sampled (--burst {burst.on_ms}:{burst.period_ms}): every function traced "
                  f"{burst.on_ms} ms of every {burst.period_ms} ms; the counts above are "
                  "the calls seen then; "
                  "estimated for the whole run: seen / the part of the run the function was on",
                  style="bold magenta")]
    for f in sorted(profile.functions, key=lambda f: f.calls, reverse=True)[:BURST_ROWS]:
        share = traced_share(f, profile.wall_ns)
        lines.append(Text(f"  {f.name}  {location(f)}  seen {f.calls:,}  on {100 * share:.0f}%  "
                          f"estimated {f.calls / share:,.0f}"))
    return lines


def split_lines(profile: Profile, plain: bool = False) -> list[Text]:
    """The legend, and what the split rests on: CPU readings, the calibrated
    probe cost and the overhead taken out of the functions' CPU time."""
    lines = [bar.legend(bar.parts_for(profile.split_known), plain)]
    if profile.split_known:
        where = "blocked and runnable told apart by the kernel's schedstat" if profile.schedstat \
            else "blocked and runnable not told apart (no schedstat)"
        lines[0].append(f"   (CPU readings; waiting: {where})", style="dim")
    else:
        lines[0].append("   (no CPU readings: CPU and waiting not told apart)", style="dim")
    total = sum(f.self_ns for f in profile.functions)
    over = profile.overhead_ns
    share = f" ({100 * over / total:.1f}% of measured time)" if total else ""
    if profile.engine == "native":  # a program without Python: its scopes alone (ulma_runtime.c)
        probes = [f"scopes calibrated at {profile.scope_probe_ns:.1f} / {profile.scope_end_probe_ns:.1f} ns "
                  "a begin / end"]
    else:
        probes = [f"probe calibrated at {profile.probe_ns:.1f} ns per event"]
    lines.append(Text(f"call overhead {fmt_ns(over)}{share} taken out of CPU time, shown yellow; "
                      f"{', '.join(probes)}"
                      f"{'; native calls traced' if profile.native_calls else ''}", style="dim"))
    return lines


def asyncio_lines(profile: Profile, limit: int = 5) -> list[Text]:
    """The event loop's idle wait (left out of the table) and the tasks by
    coroutine: how many, their time running and awaiting."""
    lines = []
    idle = eventloop.idle_ns(profile)
    if idle:
        lines.append(Text(f"event loop idle {fmt_ns(idle)}: waiting in the selector with nothing ready "
                          "(left out of the table)", style="bold"))
    groups = eventloop.task_groups(profile)
    if groups:
        line = Text("asyncio tasks by coroutine: ", style="bold")
        for n, g in enumerate(groups[:limit]):
            line.append(f"{'; ' if n else ''}{g.name} x{g.tasks} ", style="bold")
            line.append(f"running {fmt_ns(g.running_ns)}, awaiting {fmt_ns(g.awaiting_ns)}")
        if len(groups) > limit:
            line.append(f"; {len(groups) - limit} more in --json")
        lines.append(line)
    tasks, totals = profile.tasks, profile.task_totals
    if tasks:
        going = totals.going
        line = Text(f"asyncio tasks {totals.seen:,}: {totals.done:,} done, {totals.failed:,} failed, "
                    f"{going:,} not finished", style="bold")
        line.append("; " + ("those not finished, then the longest-lived:" if going else "the longest-lived:"))
        lines.append(line)
        shown = sorted(tasks, key=lambda t: (t.state not in ("running", "waiting"),
                                             -(t.running_ns + t.waiting_ns)))[:limit]
        for t in shown:
            where = f"{t.file.rsplit('/', 1)[-1]}:{t.line}"
            row = Text(f"  {t.name}", style="bold")
            row.append(f" ({where})" if t.name == t.coroutine else f" ({t.coroutine}, {where})")
            row.append(f": running {fmt_ns(t.running_ns)}, waiting {fmt_ns(t.waiting_ns)}, "
                       f"{t.steps:,} steps, {eventloop.task_words(t)}")
            lines.append(row)
        if len(tasks) > limit or totals.not_listed:
            more = len(tasks) - len(shown) + totals.not_listed
            lines.append(Text(f"  ({more:,} more in --json)", style="dim"))
    blocks = profile.loop_blocks
    if blocks or profile.loop_blocks_over:
        n = len(blocks) + profile.loop_blocks_over
        lines.append(Text(f"event loop blocked {n} times over {fmt_ns(profile.loop_block_ns)} (a callback or "
                          "task step that never gave the loop back), longest:", style="bold red"))
        for b in sorted(blocks, key=lambda b: -b.ns)[:limit]:
            lines.append(Text(f"  at {fmt_ns(b.start_ns)}: {eventloop.block_words(b)}"))
    return lines


def summary_lines(profile: Profile) -> list[Text]:
    events, dropped = profile.events, profile.dropped
    seen = Text(f"events {events:,}  threads {len(profile.threads)}  run time {fmt_ns(profile.wall_ns)}")
    tool = f" (sys.monitoring tool id {profile.tool_id})" if profile.tool_id is not None else ""
    seen.append(f"  engine {profile.engine}{tool}  clock {profile.clock}", style="dim")
    lost = Text(f"dropped {dropped:,}", style="bold red" if dropped else "")
    if dropped:
        share = 100 * dropped / max(events + dropped, 1)
        lost.append(f" ({share:.2f}% of events; {fmt_ns(profile.lost_ns)} around the drops is "
                    "unmeasured; enlarge --ring-size)")
    lines = [seen, lost]
    if profile.threads_overflow:
        lines.append(Text(f"untraced threads {profile.threads_overflow:,} ({profile.untraced_events:,} "
                          "of their events not recorded): more threads were alive at once than "
                          "--max-threads", style="bold red"))
    if profile.hooks_displaced:
        lines.append(Text(f"the program's own profile function or frame evaluator took over from "
                          f"ulma's {profile.hooks_displaced} times: after that ulma misses the thread's "
                          "calls into C (a profile function) or the calls the program's evaluator does "
                          "not pass on (an evaluator)", style="bold red"))
    if profile.symtab_overflow:
        lines.append(Text(f"symbols lost {profile.symtab_overflow:,}: function names that did not fit "
                          "the symbol table (shown as <unknown #id>)", style="bold red"))
    if profile.ids_overflow:
        lines.append(Text(f"{profile.ids_overflow} functions were made after every function id was "
                          "taken: their calls are in the row <functions past the id limit>",
                          style="bold red"))
    if profile.forked_children:
        lines.append(Text(f"{profile.forked_children} forked children ran unprofiled", style="bold"))
    if len(profile.processes) > 1:
        lines[0].append(f"  processes {len(profile.processes)}", style="bold")
    return lines


def process_table(profile: Profile) -> Table:
    """One row per process of the run (children followed): how it came, how
    it ended, what ulma saw of it."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name, justify in (("pid", "right"), ("how", "left"), ("status", "left"), ("events", "right"),
                          ("functions", "right"), ("run time", "right"), ("command", "left")):
        table.add_column(name, justify=justify, no_wrap=name != "command",  # type: ignore[arg-type]
                         overflow="fold", ratio=1 if name == "command" else None)
    for p in profile.processes:
        figures = (["-", "-", "-"] if p.profile is None else
                   [f"{p.profile.events:,}", str(len(p.profile.functions)), fmt_ns(p.profile.wall_ns)])
        status = Text(p.status, style="bold red" if p.profile is None else "")
        table.add_row(str(p.pid), p.how, status, *figures, p.command)
    return table


def process_lines(profile: Profile) -> list[Text]:
    if not profile.processes:
        return []
    unprofiled = sum(p.profile is None for p in profile.processes)
    line = Text(f"{len(profile.processes)} processes (the program and the children it started); the "
                "functions above add up the same function across them", style="bold")
    if unprofiled:
        line.append(f"; {unprofiled} unprofiled", style="bold red")
    return [line]


def page_width(terminal: bool, environ: Mapping[str, str] | None = None) -> int | None:
    """The report's width: the terminal's (None: rich asks it); piped, COLUMNS
    if set, else PIPED_WIDTH (wide enough for every column)."""
    if terminal:
        return None
    columns = (os.environ if environ is None else environ).get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH


def print_report(profile: Profile, out: TextIO, *, limit: int = 30, color: bool | None = None,
                 clock: str = "wall", width: int | None = None, cwd: str | None = None) -> None:
    """The end-of-run report: the `limit` functions with the most self time
    (0: all of them), then the run's summary lines; `width` cells wide (None:
    page_width), files named from `cwd` (None: the working directory)."""
    terminal = out.isatty()
    no_color = color is False or (color is None and bar.colourless(tty=terminal))
    console = Console(file=out, width=width or page_width(terminal),
                      force_terminal=color, no_color=no_color,
                      highlight=False, soft_wrap=False)
    plain = no_color or console.color_system is None
    rows = len(ranked(profile, clock))  # (the event loop's idle rows are left out)
    limit = limit or rows  # 0: all rows
    shown = min(limit, rows)
    what = "CPU self time" if clock == "cpu" else "self time"
    console.print(Text(f"ulma: {len(profile.functions)} functions, top {shown} by {what}",
                       style="bold"))
    where = paths.roots(os.getcwd() if cwd is None else cwd)
    console.print(build_table(profile, limit, clock, console.width, plain, where))
    parts = (asyncio_lines, scope_lines, counter_lines, type_lines, dial_lines, burst_lines, summary_lines)
    for line in [*split_lines(profile, plain), *(line for part in parts for line in part(profile))]:
        console.print(line)
    if profile.processes:
        for line in process_lines(profile):
            console.print(line)
        console.print(process_table(profile))
