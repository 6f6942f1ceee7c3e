"""The live full-screen view: a ``top`` for function times while the program runs.

A Textual app over a `LiveSource` (a `LiveRun`: a program that ulma started).
Four times a second it takes a snapshot (totals so far, open frames counted
up to now) and redraws the table; keys sort, filter, pause, pick a thread,
clear history, and open a function's callers and callees.  The header
monitors the monitor: events drained per second, ring fill, drops, lag and
its own CPU use."""

from __future__ import annotations

import codecs
import contextlib
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TextIO, cast

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver
from textual.widgets import Input, Log, Static

from ulma.format.records import SYM_PYFUNC
from ulma.monitor import eventloop
from ulma.monitor.control import MAX_CPU_INTERVAL_US, ChannelFull
from ulma.monitor.live import Health, LiveSource, Rates, Snapshot, rates
from ulma.monitor.output import Captured, Stream
from ulma.monitor.profile import FunctionStats, Profile
from ulma.phases import site
from ulma.views import bar, paths
from ulma.views.grid import Cell, Col, Grid
from ulma.views.help import HelpScreen
from ulma.views.layout import pack
from ulma.views.live_rows import (
    COLUMN_INDEX,
    COLUMNS,
    Baseline,
    FuncKey,
    Link,
    Row,
    baseline,
    fit_columns,
    fmt_count,
    label,
    make_rows,
    neighbours,
    row_id,
    shown_clock,
    texts,
    time_bar,
    visible,
)
from ulma.views.report import UNTRACED_MARK
from ulma.views.units import fmt_bytes, fmt_ns

REFRESH_SECONDS = 0.25
STEP_SECONDS = 0.05  # how often the step pane looks for a new stop
STEP_KEYS = "step mode: n next event  N over a call  c continue  q leave step mode"
MAX_ROWS = 500  # a table of thousands of rows redrawn 4 times a second helps nobody
SPARK_POINTS = 40  # the objects pane's sparkline: the last this many refreshes
_SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[int]) -> str:
    """values as a line of block characters, the least at the bottom, the most at the top."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low or 1
    return "".join(_SPARKS[(v - low) * (len(_SPARKS) - 1) // span] for v in values)
RATE_WINDOW_NS = 1_000_000_000
SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹"
# The footer: the keys a newcomer needs first (every key: ? help)
FOOTER_KEYS = (("?", "help"), ("1-7", "sort"), ("/", "filter"), ("p", "pause"), ("w", "wall/cpu"),
               ("i", "hide idle"), ("⏎", "callers"), ("q", "quit"))
SCROLLBAR = 2  # cells the table's vertical scrollbar takes


_RENDER = site("render")  # the monitor's own phase (ulma.phases)


@dataclass(slots=True)
class ViewSettings:
    title: str = ""  # the program, as the user named it
    refresh_seconds: float | None = REFRESH_SECONDS  # None: only refresh_now() redraws (tests)
    exit_when_done: bool = False  # close the view by itself when the program ends
    output: Captured | None = None  # show the program's output in a pane
    close_requested: threading.Event = field(default_factory=threading.Event)  # set from a signal handler
    terminal_gone: Callable[[], bool] = lambda: False  # asked on every tick: True closes the view
    cwd: str = field(default_factory=os.getcwd)
    clock: str = "wall"  # the time columns: "wall" or "cpu" (key w toggles)
    step: bool = False  # start in step mode (ulma run --step)
    plain: bool | None = None  # the bar in letters, not colours; None: if NO_COLOR or TERM=dumb
    hide_idle: bool = False  # hide the functions that mostly wait (key i toggles)


def exit_words(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class _Lenient:
    """The terminal as Textual's writer thread sees it, minus the errors of
    one that went away (EIO): that thread would die of the first, and the
    view, whose writes it queues, would wait for it forever on its way out."""

    def __init__(self, file: TextIO) -> None:
        self._file = file

    def write(self, text: str) -> int:
        try:
            return self._file.write(text)
        except OSError:
            return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            self._file.flush()

    def fileno(self) -> int:
        return self._file.fileno()


class _Driver(LinuxDriver):
    """Textual's terminal driver, writing through `_Lenient`."""

    def __init__(self, app: App[Any], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        file = getattr(self, "_file", None)
        if file is not None and hasattr(file, "write"):
            self._file = cast(Any, _Lenient(file))


class LiveView(App[None]):
    TITLE = "ulma"
    CSS = """
    #health { height: auto; max-height: 5; padding: 0 1; background: $boost; }
    #functions { height: 1fr; }
    #links { height: 14; display: none; border-top: solid $accent; }
    #links.open { display: block; }
    #links-title { height: 1; padding: 0 1; }
    #links Grid { width: 1fr; height: 1fr; }
    #tasks { height: 12; display: none; border-top: solid $accent; }
    #tasks.open { display: block; }
    #tasks-title { height: 1; padding: 0 1; }
    #task-rows { height: 1fr; }
    #objects { height: 12; display: none; border-top: solid $accent; }
    #objects.open { display: block; }
    #objects-title { height: 1; padding: 0 1; }
    #object-rows { height: 1fr; }
    #output { height: 8; border-top: solid $accent; }
    #filter { display: none; }
    #filter.open { display: block; }
    #dial { display: none; }
    #dial.open { display: block; }
    #interval { display: none; }
    #interval.open { display: block; }
    #keys { height: auto; max-height: 3; padding: 0 1; background: $boost; }
    #step { height: auto; max-height: 16; display: none; border-top: solid $warning; padding: 0 1; }
    #step.open { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit_view", "quit"),
        Binding("ctrl+c", "interrupt", "interrupt the program", priority=True),
        Binding("p", "pause", "pause"),
        Binding("t", "next_thread", "thread"),
        Binding("a", "tasks", "asyncio tasks"),
        Binding("o", "objects", "objects"),
        Binding("c", "clear", "clear history"),
        Binding("w", "toggle_clock", "wall/cpu"),
        Binding("slash", "filter", "filter"),
        Binding("x", "switch", "off/on"),
        Binding("X", "switch_module", "module off/on"),
        Binding("d", "dial", "dial"),
        Binding("i", "toggle_idle", "hide idle"),
        Binding("I", "interval", "cpu clock interval"),
        Binding("question_mark", "help", "help"),
        Binding("escape", "close", "close"),
        Binding("s", "step_stop", "single-step"),
        Binding("n", "step_next", "step: next event", show=False),
        Binding("N", "step_over", "step: over a call", show=False),
        *(Binding(str(i + 1), f"sort({i})", c.label, show=False) for i, c in enumerate(COLUMNS)),
    ]

    def __init__(self, source: LiveSource, settings: ViewSettings | None = None) -> None:
        super().__init__()
        self.source = source
        self.settings = settings or ViewSettings()
        self.sort_index = COLUMN_INDEX["self"]
        self.descending = True
        self.needle = ""
        self.paused = False
        self.thread: int | None = None  # ring slot shown; None: all threads
        self.snap: Snapshot | None = None
        self.rows: list[Row] = []
        self.shown: list[FuncKey] = []  # the table's rows, top to bottom
        self.focus_key: FuncKey | None = None  # the function whose callers/callees are open
        self._baseline: Baseline | None = None
        self._health: Health | None = None
        self._rates: Rates | None = None
        self._history: deque[Health] = deque()
        self._exit_seen = False
        self._drawn_clock = ""  # the clock the headers and the legend were drawn for
        self.bar_width = 0  # the table's columns: set from the width (_set_columns)
        self.name_width = 0
        self.shown_columns: list[int] = list(range(len(COLUMNS)))  # indexes into COLUMNS
        self.plain = bar.colourless() if self.settings.plain is None else self.settings.plain
        self.hidden_idle = 0  # rows hidden by i at the last redraw
        self.roots = paths.roots(self.settings.cwd)
        self._acked = 0  # control commands whose effect was already told
        self._modules_off: set[str] = set()  # files switched off with X
        self._followed: set[int] = set()  # symbols _follow_modules has looked at
        self.stepping = False  # step mode: s entered it, c or q leaves it
        self.step_seen = 0  # the last stop shown (the agent's count)
        self.step_events: list[tuple[str, str, str]] = []  # every stop shown: (kind, function, file)
        self.step_text = Text()  # what the step pane shows
        self.show_tasks = False  # a: the asyncio tasks pane
        self.show_objects = False  # o: the objects pane (--objects)
        # objects: each type's (made, destroyed) at the last snapshot and when, for the rates; the
        # objects live over time, for the sparkline
        self._object_counts: tuple[int, dict[str, tuple[int, int]]] | None = None
        self._object_rates: dict[str, tuple[float, float]] = {}
        self._live_history: deque[int] = deque(maxlen=SPARK_POINTS)
        self._decoders = {"out": codecs.getincrementaldecoder("utf-8")("replace"),
                          "err": codecs.getincrementaldecoder("utf-8")("replace")}

    def get_driver_class(self) -> type[Driver]:
        found = super().get_driver_class()
        return _Driver if found is LinuxDriver else found

    # -- layout ---------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="health")
        yield Grid(id="functions")
        with Vertical(id="links"):
            yield Static(id="links-title")
            with Horizontal():
                yield Grid(id="callers")
                yield Grid(id="callees")
        with Vertical(id="tasks"):
            yield Static(id="tasks-title")
            yield Grid(id="task-rows")
        with Vertical(id="objects"):
            yield Static(id="objects-title")
            yield Grid(id="object-rows")
        if self.settings.output is not None:
            yield Log(id="output", max_lines=5000)
        yield Static(id="step")
        yield Input(placeholder="filter by name or file (enter keeps it, esc clears it)", id="filter")
        yield Input(placeholder="dial: overhead budget in % of the plain run (0: off; enter sets it, "
                                "esc closes)", id="dial")
        yield Input(placeholder="how often the threads read their CPU clock, in microseconds (enter sets "
                                "it, esc closes)", id="interval")
        yield Static(id="keys")

    def on_mount(self) -> None:
        self._set_columns()
        self._render_keys()
        self.refresh_now()
        if self.settings.refresh_seconds:
            self.set_interval(self.settings.refresh_seconds, self._tick)
            self.set_interval(STEP_SECONDS, self.refresh_step)
        if self.settings.step:  # --step: the stop was asked before the program started
            self._open_step()

    def _render_keys(self) -> None:
        """The footer: the main keys, then the bar's legend, wrapped between items."""
        items = []
        for key, meaning in FOOTER_KEYS:
            item = Text(key, style="bold")
            item.append(f" {meaning}", style="dim")
            items.append(item)
        split_known = self.snap.profile.split_known if self.snap is not None else True
        legend = bar.legend_items(bar.parts_for(split_known, self.clock), self.plain)
        legend[0] = Text("bar: ").append_text(legend[0])
        width = max(self.size.width - 2, 20)  # the padding
        footer = pack([*items, *legend], width)
        if "\n" in footer.plain:  # on two lines or more: the legend on a line of its own, not split
            footer = pack(items, width).append("\n").append_text(pack(legend, width))
        self.query_one("#keys", Static).update(footer)

    @property
    def clock(self) -> str:
        """The clock the time columns show: the one chosen, if this run can show it."""
        return shown_clock(self.snap.profile, self.settings.clock) if self.snap is not None \
            else self.settings.clock

    def on_resize(self) -> None:
        # (the app's size is the new one only once the resize is handled: after this handler)
        self.call_after_refresh(self._lay_out)

    def _lay_out(self) -> None:
        """Everything whose layout depends on the width, for the width now."""
        self._set_columns()
        self._render_table()
        self._render_keys()
        self._render_health()

    def _set_columns(self) -> None:
        # What gives way on a narrow screen, in order: the name's path, the bar's length, calls/s and
        # per call (layout.fit).  The line is the width less the scrollbar, and a margin before it.
        self.shown_columns, self.name_width, self.bar_width = fit_columns(self.size.width - SCROLLBAR - 1)
        columns = [Col(self._header(i), COLUMNS[i].width or self.name_width, right=bool(COLUMNS[i].width))
                   for i in self.shown_columns]
        split_label = "time split" if self.bar_width >= len("time split") else "split"
        bar_column = Col([("CPU time" if self.clock == "cpu" else split_label, "")], self.bar_width)
        self.query_one("#functions", Grid).set_columns([*columns, bar_column])
        # Per-edge times are wall times: the replay keeps no CPU time per caller-callee pair.
        numbers = (("calls", 9), ("wall time" if self.clock == "cpu" else "time", 9),
                   ("% wall" if self.clock == "cpu" else "%", 6))
        side = max(16, self.size.width // 2 - sum(w + 1 for _, w in numbers) - 4)
        for which in ("callers", "callees"):
            self.query_one(f"#{which}", Grid).set_columns(
                [Col([(which[:-1], "")], side),
                 *(Col([(label, "")], width, right=True) for label, width in numbers)])

    def _header(self, i: int) -> Cell:
        """The label, its sort key as a superscript digit, and the sort arrow."""
        sorted_here = i == self.sort_index
        arrow = ("▼" if self.descending else "▲") if sorted_here else ""
        return [(label(COLUMNS[i], self.clock), "reverse" if sorted_here else ""),
                (SUPERSCRIPTS[i + 1] + arrow, "dim")]

    # -- data -----------------------------------------------------------------

    def _tick(self) -> None:
        if self.settings.close_requested.is_set() or self.settings.terminal_gone():
            self.exit()
        elif not self._exit_seen:  # after the end nothing changes: keys still redraw
            self.refresh_now()

    def refresh_now(self, force: bool = False) -> None:
        """Takes a snapshot and redraws (while paused: only the header,
        unless forced)."""
        with _RENDER:
            self._refresh_now(force)

    def _refresh_now(self, force: bool) -> None:
        done = self.source.done.is_set()
        if self.paused and not force:
            self._note_health(self.source.health())
        else:
            snap = self.source.snapshot(self.thread)
            at = snap.health.at_ns
            self.rows = make_rows(snap.profile, self._baseline, at, self.settings.clock)
            self._baseline = baseline(snap.profile, at)
            self.snap = snap
            if self._drawn_clock != self.clock:  # first snapshot, w pressed, or CPU readings known
                self._drawn_clock = self.clock
                self._render_keys()
                self._set_columns()
            self._note_health(snap.health)
            self._render_table()
            self._render_links()
            self._render_tasks()
            self._note_objects(snap.profile, at)
            self._render_objects()
        self._follow_modules()
        self._tell_switches()
        self._show_output()
        self._render_health()
        if done and not self._exit_seen:
            self._on_program_exit()

    def _note_health(self, health: Health) -> None:
        # Rates over the last second or so: over one refresh they jitter too much to read.
        self._history.append(health)
        while len(self._history) > 2 and health.at_ns - self._history[1].at_ns >= RATE_WINDOW_NS:
            self._history.popleft()
        if len(self._history) > 1:
            self._rates = rates(self._history[0], health)
        self._health = health

    def _on_program_exit(self) -> None:
        self._exit_seen = True
        if self.settings.exit_when_done or not self.source.started():
            self.exit()

    def _show_output(self) -> None:
        captured = self.settings.output
        if captured is None:
            return
        log = self.query_one("#output", Log)
        for name, stream in (("out", captured.stdout), ("err", captured.stderr)):
            self._pour(log, name, stream)

    def _pour(self, log: Log, name: str, stream: Stream) -> None:
        data = stream.new_for_pane()
        if data:
            log.write(self._decoders[name].decode(data))

    # -- drawing --------------------------------------------------------------

    def _render_table(self) -> None:
        if self.snap is None:
            return
        known = self.snap.profile.split_known
        column = COLUMNS[self.sort_index]
        rows = visible(self.rows, self.needle, column, self.descending, self.settings.hide_idle, known)
        self.hidden_idle = len(visible(self.rows, self.needle, column, self.descending)) - len(rows) \
            if self.settings.hide_idle else 0
        rows = rows[:MAX_ROWS]
        self.shown = [r.key for r in rows]
        wall = max(self.snap.profile.wall_ns, 1)
        self.query_one("#functions", Grid).set_rows([(row_id(r.key), self._cells(r, wall)) for r in rows])

    def _cells(self, row: Row, wall: int) -> list[Cell]:
        f = row.stats
        mark = self._switch_mark(f)
        head: Cell = [(f.name, "bold"), *([(f"  {mark}", "bold magenta")] if mark else [])]
        # the name whole, the path shortened to what is left (paths.elide)
        room = self.name_width - sum(len(text) for text, _ in head) - 2
        where = paths.elide(paths.location(f.file, f.line, self.roots), room) if room > 0 else ""
        name: Cell = [*head, *([(f"  {where}", "dim")] if where else [])]
        known = self.snap is None or self.snap.profile.split_known
        values = list(texts(row))
        if f.untraced_callees:  # its self time holds callees' time while they were off
            values[COLUMN_INDEX["self"] - 1] += UNTRACED_MARK
        cells: list[Cell] = [name, *([(v, "")] for v in values)]
        return [*(cells[i] for i in self.shown_columns),
                time_bar(row, known, wall, self.bar_width, self.plain)]

    def _switch_mark(self, f: FunctionStats) -> str:
        """off (since when), off… (asked, not yet taken), or how long it was off."""
        sw = self.source.control.functions.get(f.fid) if f.fid else None
        if sw is not None and sw.pending:
            return "on…" if sw.off_since_ns is not None else "off…"
        if f.off:
            return f"off {fmt_ns(f.off_ns)}"
        if f.off_ns:
            return f"was off {fmt_ns(f.off_ns)}"
        return ""

    def _tell_switches(self) -> None:
        """Says when each switch took effect (the agent's acknowledgement)."""
        done = self.source.control.done
        names = {r.stats.fid: r.stats.name for r in self.rows}
        for cmd in done[self._acked:]:
            if cmd.interval_us:
                if cmd.status != "applied" or cmd.done_ns is None:
                    self.notify("the agent refused the CPU clock interval (this run reads no CPU clock: "
                                "--cpu-interval 0)", severity="warning", timeout=3)
                else:
                    self.notify(f"CPU clock read every {cmd.interval_us} µs: took effect "
                                f"{fmt_ns(max(cmd.done_ns - cmd.posted_ns, 0))} after the key", timeout=3)
                continue
            name = names.get(cmd.fid, f"#{cmd.fid}")
            if cmd.status != "applied" or cmd.done_ns is None:
                self.notify(f"{name}: the agent refused the switch", severity="warning", timeout=3)
                continue
            after = fmt_ns(max(cmd.done_ns - cmd.posted_ns, 0))
            self.notify(f"{name} {'off' if cmd.off else 'on'}: took effect {after} after the key",
                        timeout=3)
        self._acked = len(done)

    def _render_health(self) -> None:
        """The header: the run's state, then the monitor's, each wrapped
        between its items to the screen's width."""
        width = max(self.size.width - 2, 20)  # the padding
        text = pack(self._status_items(), width)
        text.append("\n")
        text.append_text(pack(self._monitor_items(), width))
        self.query_one("#health", Static).update(text)

    def _status_items(self) -> list[Text]:
        head = Text("ulma ", style="bold")
        head.append(self.settings.title or "")
        items = [head]
        code = self.source.returncode
        elapsed = fmt_ns(self.source.elapsed_ns())
        if self.source.error is not None:
            items.append(Text(f"monitor failed: {self.source.error}", style="bold red"))
        elif code is None:
            items += [Text(f"pid {self.source.pid}"), Text(f"running {elapsed}")]
        else:
            ended = Text(f"program {exit_words(code)} after {elapsed}", style="bold yellow")
            ended.append(" (q shows the report)", style="")
            items.append(ended)
        clock = self.settings.clock
        if clock != self.clock:
            clock += f" unavailable (no CPU readings): {self.clock} shown"
        items += [Text(f"thread {self._thread_label()}"), Text(f"clock {clock}"),
                  Text(f"sort {label(COLUMNS[self.sort_index], self.clock)} "
                       f"{'▼' if self.descending else '▲'}")]
        if self.needle:
            items.append(Text(f"filter {self.needle!r}"))
        if self.settings.hide_idle:
            items.append(Text(f"idle hidden: {self.hidden_idle} (i shows)", style="bold cyan"))
        if self.snap is not None and (idle := eventloop.idle_ns(self.snap.profile)):
            items.append(Text(f"loop idle {fmt_ns(idle)}"))
        if self.snap is not None and self.snap.profile.task_totals.seen:
            items.append(Text(f"tasks {self.snap.profile.task_totals.going:,} going (a)"))
        if self.snap is not None and (blocks := self.snap.profile.loop_blocks):
            items.append(Text(f"loop blocked {len(blocks) + self.snap.profile.loop_blocks_over}x, last "
                              f"{eventloop.block_words(blocks[-1], 3)}", style="bold red"))
        if self.snap is not None and (counters := self.snap.profile.counters):
            shown = ", ".join(f"{c.name}={c.last:,}" for c in counters[:3])
            items.append(Text(f"counters {shown}{', ...' if len(counters) > 3 else ''}", style="cyan"))
        if self.snap is not None and self.source.cleared:
            items.append(Text(f"since clear {fmt_ns(self.snap.profile.wall_ns)}"))
        dial = self.source.session.dial
        if dial is not None:
            st = dial.state
            if st.budget > 0:
                how = "estimated" if st.priced_at_s is not None else "estimated at the probe cost"
                items.append(Text(f"dial {st.budget:g}%: overhead {st.estimate:.1f}% ({how}), "
                                  f"{st.off_now} off", style="magenta"))
            else:
                items.append(Text("dial off", style="magenta"))
        if self.paused:
            items.append(Text("PAUSED", style="bold reverse"))
        return items

    def _thread_label(self) -> str:
        if self.thread is None:
            return "all"
        tids = dict(self._health.slots) if self._health else {}
        return f"#{self.thread} (tid {tids.get(self.thread, '?')})"

    def _monitor_items(self) -> list[Text]:
        h, r = self._health, self._rates
        first = Text("monitor: ", style="dim")
        if h is None:
            return [first]
        first.append(f"drained {fmt_count(r.events_per_s) if r else '-'} events/s")
        fill_style = "bold red" if h.fill > 0.9 else "yellow" if h.fill > 0.5 else ""
        return [first, Text(f"ring fill {100 * h.fill:.1f}%", style=fill_style),
                Text(f"dropped {h.dropped:,}", style="bold red" if h.dropped else ""),
                Text(f"lag {fmt_ns(h.lag_ns) if h.lag_ns is not None else '-'}"),
                Text(f"CPU {r.cpu_percent:.1f}%" if r else "CPU -"),
                Text(f"events {h.events:,}", style="dim"), Text(f"threads {len(h.slots)}", style="dim")]

    def _render_links(self) -> None:
        pane = self.query_one("#links", Vertical)
        if self.focus_key is None or self.snap is None:
            pane.set_class(False, "open")
            return
        pane.set_class(True, "open")
        callers, callees = neighbours(self.snap.profile, self.focus_key, self.roots)
        name, file, line = self.focus_key
        title = Text("callers and callees of ", style="dim")
        title.append(name, style="bold")
        what = ("wall time: CPU time is not kept per caller and callee; % of its total wall time"
                if self.clock == "cpu" else "% of its total time")
        title.append(f"  {paths.location(file, line, self.roots)}   ({what}; enter on a row goes there)",
                     style="dim")
        self.query_one("#links-title", Static).update(title)
        self._fill_links("callers", callers)
        self._fill_links("callees", callees)

    def _render_tasks(self) -> None:
        """The asyncio tasks: those not finished (what each waits in), then the finished ones
        kept, longest-lived first."""
        pane = self.query_one("#tasks", Vertical)
        pane.set_class(self.show_tasks, "open")
        if not self.show_tasks or self.snap is None:
            return
        tasks, totals = self.snap.profile.tasks, self.snap.profile.task_totals
        going = [t for t in tasks if t.state in ("running", "waiting")]
        title = Text("asyncio tasks ", style="bold")
        title.append(f"{totals.seen:,} seen, {len(going):,} not finished, {totals.done:,} done, "
                     f"{totals.failed:,} failed   (every thread; a closes)", style="dim")
        self.query_one("#tasks-title", Static).update(title)
        shown = sorted(tasks, key=lambda t: (t.state not in ("running", "waiting"),
                                             -(t.running_ns + t.waiting_ns)))[:MAX_ROWS]
        rows = []
        for t in shown:
            name = t.name if t.name == t.coroutine else f"{t.name} ({t.coroutine})"
            rows.append((f"task-{t.pid}-{t.number}", [[(name, "bold")], [(eventloop.task_words(t), "")],
                                                      [(f"{t.steps:,}", "")], [(fmt_ns(t.running_ns), "")],
                                                      [(fmt_ns(t.waiting_ns), "")]]))
        grid = self.query_one("#task-rows", Grid)
        side = max(16, (self.size.width - 3 * 11 - 8) // 2)
        grid.set_columns([Col([("task", "")], side), Col([("state", "")], side),
                          Col([("steps", "")], 10, right=True), Col([("running", "")], 10, right=True),
                          Col([("waiting", "")], 10, right=True)])
        grid.set_rows(rows)

    def _note_objects(self, profile: Profile, at_ns: int) -> None:
        """Each type's rates since the last snapshot, and the objects live now (--objects)."""
        if profile.objects is None:
            return
        counts = {t.name: (t.created, t.freed) for t in profile.types}
        if self._object_counts is not None and at_ns > self._object_counts[0]:
            seconds = (at_ns - self._object_counts[0]) / 1e9
            before = self._object_counts[1]
            self._object_rates = {name: ((made - before.get(name, (0, 0))[0]) / seconds,
                                         (freed - before.get(name, (0, 0))[1]) / seconds)
                                  for name, (made, freed) in counts.items()}
        self._object_counts = (at_ns, counts)
        self._live_history.append(sum(t.live for t in profile.types))

    def _render_objects(self) -> None:
        """--objects: the types by objects live, with what is made and destroyed per second; with a
        function selected (enter), the types it made."""
        pane = self.query_one("#objects", Vertical)
        pane.set_class(self.show_objects, "open")
        if not self.show_objects or self.snap is None:
            return
        profile = self.snap.profile
        title = Text("objects ", style="bold")
        grid = self.query_one("#object-rows", Grid)
        if profile.objects is None:
            title.append("not counted: run with --objects   (o closes)", style="dim")
            self.query_one("#objects-title", Static).update(title)
            grid.set_rows([])
            return
        title.append(f"live {sum(t.live for t in profile.types):,} ")
        title.append(sparkline(list(self._live_history)), style="cyan")
        mechanism = profile.objects.get("mechanism")
        if mechanism == "allocator":  # (3.11, 3.12: labelled, as the report and the JSON do)
            title.append("   allocator's blocks: free-listed list/dict/tuple/float unseen", style="yellow")
        elif mechanism == "reftracer-late":
            title.append("   free-listed objects' destructions found late", style="yellow")
        rows = []
        if self.focus_key is not None:
            name = self.focus_key[0]
            title.append(f"   made by {name} (enter on another row changes it; o closes)", style="dim")
            made = [(t, f) for t in profile.types for f in t.by_function
                    if (f.function is not None and
                        (profile.functions[f.function].name, profile.functions[f.function].file,
                         profile.functions[f.function].line) == self.focus_key)]
            for t, f in sorted(made, key=lambda tf: -(tf[1].created - tf[1].freed))[:MAX_ROWS]:
                rows.append((f"objects-{t.name}", [[(t.name, "bold")], [(f"{f.created - f.freed:,}", "")],
                                                   [(f"{f.created:,}", "")], [(f"{f.freed:,}", "")],
                                                   [(f"{f.freed_here:,}", "")]]))
            heads = ("type", "live", "made", "destroyed", "destroyed here")
        else:
            title.append(f"   {len(profile.types)} types, every thread; enter on a function shows what it "
                         "made (o closes)", style="dim")
            sized = any(t.bytes is not None for t in profile.types)  # (the allocator tells sizes)
            for t in sorted(profile.types, key=lambda t: (-t.live, -t.created))[:MAX_ROWS]:
                made_s, freed_s = self._object_rates.get(t.name, (0.0, 0.0))
                cells = [[(t.name, "bold")], [(f"{t.live:,}", "")]]
                if sized:
                    cells.append([(fmt_bytes(t.bytes) if t.bytes is not None else "-", "")])
                cells += [[(f"{made_s:,.0f}", "")], [(f"{freed_s:,.0f}", "")], [(f"{t.created:,}", "")]]
                rows.append((f"objects-{t.name}", cells))
            heads = ("type", "live", *(("bytes live",) if sized else ()), "made/s", "destroyed/s", "made")
        self.query_one("#objects-title", Static).update(title)
        side = max(16, self.size.width - (len(heads) - 1) * 14 - 8)
        grid.set_columns([Col([(heads[0], "")], side),
                          *(Col([(h, "")], 13, right=True) for h in heads[1:])])
        grid.set_rows(rows)

    def action_objects(self) -> None:
        self.show_objects = not self.show_objects
        self._render_objects()

    def action_tasks(self) -> None:
        self.show_tasks = not self.show_tasks
        self._render_tasks()

    def _fill_links(self, side: str, links: list[Link]) -> None:
        rows = [(row_id(link.key), [[(link.label, "")], *([(v, "")] for v in (
            f"{link.calls:,}", fmt_ns(link.total_ns), f"{link.share:.1f}"))]) for link in links[:MAX_ROWS]]
        self.query_one(f"#{side}", Grid).set_rows(rows)

    # -- keys -----------------------------------------------------------------

    def action_quit_view(self) -> None:
        if self.stepping:  # q leaves step mode
            self._step_post("cont")
            self.stepping = False
            self.query_one("#step", Static).set_class(False, "open")
            return
        self.exit()

    def action_interrupt(self) -> None:
        self.source.interrupt()
        self.notify("sent SIGINT to the program", timeout=2)

    def action_pause(self) -> None:
        self.paused = not self.paused
        self._baseline = None  # calls/s after a pause would average over the pause
        if not self.paused:
            self.refresh_now()
        self._render_health()

    def action_next_thread(self) -> None:
        slots = [None, *(slot for slot, _tid in (self._health.slots if self._health else ()))]
        at = slots.index(self.thread) if self.thread in slots else 0
        self.thread = slots[(at + 1) % len(slots)]
        self._baseline = None  # another thread's counts are no baseline for this one
        self.refresh_now(force=True)

    def action_clear(self) -> None:
        if self.stepping:  # c continues: the program runs free, the pane stays (s stops again)
            self._step_post("cont")
            return
        if self.source.done.is_set():
            # Nothing more can be counted, and the report after q covers what the view kept.
            self.notify("the program has ended: history kept (q shows the report)", timeout=3)
            return
        self.source.clear()
        # Counts restart at zero now: calls/s until the next snapshot is counted from here.
        self._baseline = Baseline(time.monotonic_ns(), {})
        self.refresh_now(force=True)

    def action_toggle_clock(self) -> None:
        """The time columns count wall time or CPU time only."""
        self.settings.clock = "cpu" if self.settings.clock == "wall" else "wall"
        self.refresh_now(force=True)

    def action_sort(self, index: int) -> None:
        if index == self.sort_index:
            self.descending = not self.descending
        else:
            self.sort_index, self.descending = index, COLUMNS[index].descending
        self._set_columns()  # the headers show the sort
        self._render_table()
        self._render_health()

    def action_switch(self) -> None:
        """x: the selected function off or on; with a filter, every function shown."""
        if self.needle:
            targets = [r.stats for r in self.rows if r.key in set(self.shown)]
        else:
            key = self.query_one("#functions", Grid).cursor_key
            targets = [r.stats for r in self.rows if row_id(r.key) == key]
        self._switch(targets)

    def action_switch_module(self) -> None:
        """X: every function of the selected function's module (its file) off or on.  A module
        switched off stays off: its functions first called later are switched off as they show
        up (`_follow_modules`), after the calls made before the monitor saw them (counted)."""
        key = self.query_one("#functions", Grid).cursor_key
        picked = next((r.stats for r in self.rows if row_id(r.key) == key), None)
        if picked is not None:
            off = self._switch([r.stats for r in self.rows if r.stats.file == picked.file])
            if off:
                self._modules_off.add(picked.file)
            elif off is not None:
                self._modules_off.discard(picked.file)

    def _follow_modules(self) -> None:
        """Switches off the functions of modules switched off with X that the monitor learned of
        since (a function switched on again with x stays on: it is known to the control)."""
        if not self._modules_off or self.source.done.is_set():
            return
        control = self.source.control
        symbols = self.source.symbols()
        new = [fid for fid, sym in symbols.items()
               if fid not in self._followed and fid not in control.functions
               and sym.file in self._modules_off and sym.kind == SYM_PYFUNC]
        self._followed.update(symbols)
        room = control.room()
        self._followed.difference_update(new[room:])  # the agent is behind: the next refresh posts these
        if new[:room]:
            control.switch(new[:room], True)

    def _switch(self, targets: list[FunctionStats]) -> bool | None:
        """Posts the switches; True if they were off, False on, None if nothing was asked."""
        targets = [f for f in targets if f.fid and not f.native]
        if not targets:
            self.notify("nothing to switch (C functions cannot be switched)", timeout=2)
            return None
        if self.source.done.is_set():
            self.notify("the program has ended", timeout=2)
            return None
        control = self.source.control
        # all off already: on again; else off
        off = not all(control.is_off(f.fid) for f in targets)
        try:
            control.switch([f.fid for f in targets], off)
        except ChannelFull:
            self.notify("the agent has not taken the last switches yet (is the program running "
                        "Python code?)", severity="warning", timeout=3)
        self.notify(f"{len(targets)} function{'s' if len(targets) > 1 else ''} "
                    f"{'off' if off else 'on'}: asked", timeout=2)
        self._render_table()
        return off

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.set_class(True, "open")
        box.value = self.needle
        box.focus()

    def action_dial(self) -> None:
        """d: opens the dial (the overhead budget)."""
        box = self.query_one("#dial", Input)
        box.set_class(True, "open")
        dial = self.source.session.dial
        box.value = f"{dial.state.budget:g}" if dial is not None else ""
        box.focus()

    def action_toggle_idle(self) -> None:
        """i: hides (or shows again) the functions that spent nearly all their time waiting."""
        self.settings.hide_idle = not self.settings.hide_idle
        self._render_table()
        self._render_health()

    def action_help(self) -> None:
        """?: every key, what % and the bar mean."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_interval(self) -> None:
        """I: how often the threads read their CPU clock (--cpu-interval, changed while running)."""
        box = self.query_one("#interval", Input)
        box.set_class(True, "open")
        box.value = ""
        box.focus()

    def _set_interval(self, text: str) -> None:
        try:
            self.source.control.set_interval(int(text))
        except ValueError:
            self.notify(f"the CPU clock interval is 1 to {MAX_CPU_INTERVAL_US} microseconds",
                        severity="warning", timeout=3)
        except ChannelFull as exc:
            self.notify(str(exc), severity="warning", timeout=3)

    def _set_dial(self, text: str) -> None:
        try:
            pct = float(text)
        except ValueError:
            pct = -1.0
        if not 0 <= pct <= 100:
            self.notify("the dial takes a budget from 0 (off) to 100 %", severity="warning", timeout=3)
            return
        self.source.session.set_budget(pct)
        self.notify(f"dial: {'off' if pct == 0 else f'overhead under {pct:g}%'}", timeout=2)
        self._render_health()

    def action_close(self) -> None:
        for prompt in ("#dial", "#interval"):
            prompt_box = self.query_one(prompt, Input)
            if prompt_box.has_class("open"):
                prompt_box.set_class(False, "open")
                self.query_one("#functions", Grid).focus()
                return
        box = self.query_one("#filter", Input)
        if box.has_class("open"):
            self._close_filter(keep=False)
        elif self.focus_key is not None:
            self.focus_key = None
            self._render_links()
            self.query_one("#functions", Grid).focus()

    def _close_filter(self, keep: bool) -> None:
        box = self.query_one("#filter", Input)
        box.set_class(False, "open")
        if not keep:
            self.needle = ""
            self._render_table()
            self._render_health()
        self.query_one("#functions", Grid).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "filter":
            return
        self.needle = event.value.strip()
        self._render_table()
        self._render_health()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id in ("dial", "interval"):
            event.input.set_class(False, "open")
            self.query_one("#functions", Grid).focus()
            (self._set_dial if event.input.id == "dial" else self._set_interval)(event.value.strip())
            return
        self._close_filter(keep=True)

    def on_grid_selected(self, event: Grid.Selected) -> None:
        found = next((r.key for r in self.rows if row_id(r.key) == event.key), None)
        if found is None:
            return
        self.focus_key = found
        self._render_links()
        if event.grid.id != "functions":  # went to a caller or callee: the table follows
            self.query_one("#functions", Grid).move_to(event.key)

    def on_grid_header_clicked(self, event: Grid.HeaderClicked) -> None:
        if event.grid.id == "functions" and event.column < len(self.shown_columns):
            self.action_sort(self.shown_columns[event.column])


    # -- single-step ----------------------------------------------------------

    def action_step_stop(self) -> None:
        """s: stop the program at its next call or return event."""
        self._open_step()
        self._step_post("stop")

    def _open_step(self) -> None:
        self.stepping = True
        self.query_one("#step", Static).set_class(True, "open")

    def action_step_next(self) -> None:
        """n: one event further (the stopped thread)."""
        if self.stepping:
            self._step_post("next")

    def action_step_over(self) -> None:
        """N: to the next event at the same depth or lower (over a call)."""
        if self.stepping:
            self._step_post("over")

    def _step_post(self, what: str) -> None:
        if self.source.done.is_set():
            self.notify("the program has ended", timeout=2)
            return
        stepper = self.source.stepper
        try:
            getattr(stepper, what)()
        except ChannelFull:
            self.notify("the agent has not taken the last commands yet", severity="warning", timeout=3)
        self.refresh_step()

    def refresh_step(self) -> None:
        """Shows the event the stepped thread stopped at, its function and its stack."""
        if not self.stepping:
            return
        state, stop = self.source.stepper.state()
        symbols = self.source.symbols()
        text = Text(STEP_KEYS + "\n", style="dim")
        if self.source.done.is_set():
            text.append("the program has ended", style="bold yellow")
        elif state == "signaled":
            text.append("the program got a signal: step mode ended, its handler runs", style="bold yellow")
        elif stop is None or state != "stopped":
            text.append("running: stops at the next call or return" if state in ("armed", "running")
                        else "running free (c): n or s stops it again")
        else:
            fn = symbols.get(stop.fid)
            if fn is None:
                return  # its name is not drained yet: the next look shows it
            if stop.seq != self.step_seen:
                self.step_seen = stop.seq
                self.step_events.append((stop.kind, fn.name, fn.file))
            text.append(f"stopped #{stop.seq}: ", style="bold")
            text.append(f"{stop.kind} {fn.name}", style="bold reverse")
            text.append(f"  {paths.location(fn.file, fn.line, self.roots)}  thread tid {stop.os_tid}\n",
                        style="dim")
            for depth, fid in enumerate(stop.frames):
                f = symbols.get(fid)
                text.append(f"  {'→' if depth == 0 else ' '} {f.name if f else f'#{fid}'}")
                text.append(f"  {paths.location(f.file, f.line, self.roots) if f else ''}\n", style="dim")
            if stop.truncated:
                text.append("  … (deeper frames not shown)\n", style="dim")
        if text.plain != self.step_text.plain:  # redrawn only when it changed
            self.step_text = text
            self.query_one("#step", Static).update(text)
