"""The live view's help (key ``?``): every key, and what the numbers mean.

The footer has room for a few keys only; this names them all.  The list is
written by hand, to say what each key does in words a newcomer reads, and a
test holds it against the view's bindings: a key added without a line here
fails it."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ulma.views import bar
from ulma.views.live_rows import COLUMNS, IDLE_SHARE

# (keys, what they do): a key as it is typed, several keys of one line apart by spaces
KEYS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("?",), "this help (esc, q or ? closes it)"),
    (tuple(str(i + 1) for i in range(len(COLUMNS))),
     f"sort by {', '.join(c.label for c in COLUMNS)} (the columns in order); the same key again: "
     "the other way round; or click a column's header"),
    (("/",), "filter by a part of the name or of file:line (enter keeps it, esc clears it)"),
    (("i",), f"hide / show the idle functions: those that spent {100 * IDLE_SHARE:.0f} % or more of "
             "their total time waiting (sleeping, blocked, not scheduled); shown by default, the "
             "header says how many are hidden"),
    (("w",), "time columns on the wall clock or CPU time only"),
    (("p",), "pause / resume the display (the program and the profile go on)"),
    (("t",), "the thread shown: all, then each traced thread in turn"),
    (("↑", "↓", "pgup", "pgdn", "home", "end"), "move in the table"),
    (("enter",), "callers and callees of the function selected (enter on one goes there; "
                 "tab moves between the tables)"),
    (("esc",), "close the callers and callees, the filter or a prompt"),
    (("a",), "the asyncio tasks pane (again: closes it)"),
    (("o",), "the objects pane (--objects; again: closes it)"),
    (("c",), "clear history: every count restarts at zero (the program is not affected)"),
    (("x", "X"), "switch the function selected (with a filter: every function shown) / its whole "
                 "module off or on: its counts stop, the program runs it untraced"),
    (("d",), "the dial: an overhead budget in % (0: off)"),
    (("I",), "how often the threads read their CPU clock, in microseconds (--cpu-interval)"),
    (("s",), "single-step: stop the program at its next call or return"),
    (("n", "N"), "in step mode: to the next event / over a call"),
    (("ctrl+c",), "send SIGINT to the program"),
    (("q",), "close the view (in step mode: leave step mode); ulma profiles on until the program "
             "ends, then prints the report"),
)

MEANINGS = (
    ("calls", "calls made; a generator's or coroutine's resumptions as +Nr"),
    ("calls/s", "calls per second over the last refresh (left out on a narrow screen)"),
    ("self", "time in the function itself, its callees left out"),
    ("total", "time from call to return, callees included (recursion counted once)"),
    ("per call", "total / calls (left out on a narrow screen)"),
    ("%", "self time over the time covered (since the start, or the last clear).  Every thread "
          "adds its own time: with threads running at once the % column adds up to more than "
          "100 %, and one function busy in several threads can pass 100 % on its own"),
    ("bar", "total time, every row on the same scale (the whole run), split four ways"),
)


def _table(title: str, rows: list[tuple[Text, Text]]) -> Table:
    """Two columns: what (never wrapped), and its meaning (wrapped under itself)."""
    table = Table(title=title, title_justify="left", title_style="bold underline", box=None,
                  show_header=False, padding=(0, 1), expand=True)
    table.add_column(justify="right", no_wrap=True, style="bold")
    table.add_column(ratio=1)
    for what, means in rows:
        table.add_row(what, means)
    return table


def help_tables() -> Group:
    """Every key, then what the columns and the bar mean."""
    keys = [(Text(" ".join(k)), Text(does)) for k, does in KEYS]
    columns = [(Text(column), Text(means)) for column, means in MEANINGS]
    parts = Text()
    for i, part in enumerate(bar.FOUR_WAY):
        parts.append("  " if i else "")
        parts.append(f"{bar.BLOCK}", style=part.style)
        parts.append(f" {part.name} ({part.glyph} without colour)")
    parts.append(f"; without CPU readings CPU and waiting are one part: {bar.UNSPLIT[0].name}")
    columns.append((Text(""), parts))
    return Group(_table("keys", keys), Text(""), _table("columns", columns))


class HelpScreen(ModalScreen[None]):
    """The help over the view, which goes on refreshing underneath."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 100%; max-width: 110; height: 100%; max-height: 44;
        border: round $accent; background: $surface; padding: 0 1;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "close"),
        Binding("q", "close", "close"),
        Binding("question_mark", "close", "close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(help_tables(), id="help-text")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).border_title = "ulma live view: help"
        self.query_one(VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss()
