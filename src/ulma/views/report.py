"""The end-of-run report: a table of functions sorted by self time, and the
figures that say how far to trust it (events, drops, lost time)."""

from __future__ import annotations

import os
from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ulma.monitor.profile import FunctionStats, Profile
from ulma.views.units import fmt_ns


def location(f: FunctionStats, cwd: str | None = None) -> str:
    """file:line, relative to the working directory when inside it."""
    cwd = cwd or os.getcwd()
    path = f.file
    if path.startswith(cwd + os.sep):
        path = path[len(cwd) + 1:]
    return f"{path}:{f.line}"


def build_table(profile: Profile, limit: int) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("function", overflow="fold", ratio=1)
    table.add_column("calls", justify="right", no_wrap=True)
    table.add_column("self", justify="right", no_wrap=True)
    table.add_column("total", justify="right", no_wrap=True)
    table.add_column("per call", justify="right", no_wrap=True)
    table.add_column("%", justify="right", no_wrap=True)
    rows = sorted(profile.functions, key=lambda f: (-f.self_ns, f.name))
    wall = max(profile.wall_ns, 1)
    for f in rows[:limit]:
        calls = str(f.calls) if not f.resumes else f"{f.calls}+{f.resumes}r"
        per_call = fmt_ns(f.total_ns / f.calls) if f.calls else "-"
        name = Text(f.name, style="bold")
        name.append(f"  {location(f)}", style="dim")
        table.add_row(name, calls, fmt_ns(f.self_ns), fmt_ns(f.total_ns), per_call,
                      f"{100 * f.self_ns / wall:.1f}")
    return table


def summary_lines(profile: Profile) -> list[Text]:
    events, dropped = profile.events, profile.dropped
    seen = Text(f"events {events:,}  threads {len(profile.threads)}  run time {fmt_ns(profile.wall_ns)}")
    seen.append(f"  engine {profile.engine}  clock {profile.clock}", style="dim")
    lost = Text(f"dropped {dropped:,}", style="bold red" if dropped else "")
    if dropped:
        share = 100 * dropped / max(events + dropped, 1)
        lost.append(f" ({share:.2f}% of events; {fmt_ns(profile.lost_ns)} around the drops is "
                    "unmeasured; enlarge --ring-size)")
    lines = [seen, lost]
    if profile.threads_overflow:
        lines.append(Text(f"{profile.threads_overflow} threads found no free ring and were not "
                          "traced (raise --max-threads)", style="bold red"))
    if profile.symtab_overflow:
        lines.append(Text(f"{profile.symtab_overflow} function names did not fit the symbol table",
                          style="bold red"))
    return lines


def print_report(profile: Profile, out: TextIO, *, limit: int = 30, color: bool | None = None) -> None:
    terminal = out.isatty()
    console = Console(file=out, width=None if terminal else 160,
                      force_terminal=color, no_color=color is False or not terminal,
                      highlight=False, soft_wrap=False)
    shown = min(limit, len(profile.functions))
    console.print(Text(f"ulma: {len(profile.functions)} functions, top {shown} by self time",
                       style="bold"))
    console.print(build_table(profile, limit))
    for line in summary_lines(profile):
        console.print(line)
