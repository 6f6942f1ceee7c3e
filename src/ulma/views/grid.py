"""A scrolling table of fixed-width columns for the live view, drawn line by
line: only the rows on screen are drawn, from plain (text, style) pieces.

Textual's DataTable renders every cell through rich's layout; redrawing a
screenful of it four times a second took a third of a CPU, which a profiler's
monitor must not spend.  This draws the same in a few milliseconds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

Piece = tuple[str, str]  # text and a rich style string ("" for none)
Cell = Sequence[Piece]


@dataclass(frozen=True, slots=True)
class Col:
    header: Cell
    width: int
    right: bool = False  # right-justified (numbers)


@lru_cache(maxsize=256)
def _style(spec: str) -> Style:
    return Style.parse(spec) if spec else Style()


def fit(cell: Cell, width: int, right: bool) -> list[Segment]:
    """The cell in exactly `width` cells: cropped with an ellipsis, or padded."""
    out: list[Segment] = []
    used = 0
    for text, spec in cell:
        n = cell_len(text)
        if used + n > width:
            room = width - used
            out.append(Segment(set_cell_size(text, room - 1) + "…" if room > 0 else "", _style(spec)))
            used = width
            break
        out.append(Segment(text, _style(spec)))
        used += n
    pad = Segment(" " * (width - used))
    return [pad, *out] if right else [*out, pad]


class Grid(ScrollView, can_focus=True):
    """Rows of cells under a header line that stays put.  Rows are known by
    a key; the cursor stays on its row's key when the rows are replaced."""

    DEFAULT_CSS = """
    Grid { background: $surface; }
    Grid > .grid--header { text-style: bold; background: $panel; }
    Grid > .grid--cursor { background: $accent 40%; }
    Grid:focus > .grid--cursor { background: $accent 70%; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"grid--header", "grid--cursor"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "move(-1)", "up", show=False),
        Binding("down", "move(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "move(-1000000000)", "top", show=False),
        Binding("end", "move(1000000000)", "bottom", show=False),
        Binding("enter", "select", "select", show=False),
    ]

    class Selected(Message):
        """Enter (or a click on the cursor's row) on a row."""

        def __init__(self, grid: Grid, key: str) -> None:
            super().__init__()
            self.grid = grid
            self.key = key

    class HeaderClicked(Message):
        def __init__(self, grid: Grid, column: int) -> None:
            super().__init__()
            self.grid = grid
            self.column = column

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns: list[Col] = []
        self.keys: list[str] = []
        self.rows: list[Sequence[Cell]] = []
        self.cursor = 0
        # base, header and cursor styles: costly to look up for every line
        self._looks: tuple[Style, Style, Style] | None = None

    @property
    def line_width(self) -> int:
        return sum(c.width + 1 for c in self.columns) + 1

    def set_columns(self, columns: Sequence[Col]) -> None:
        self.columns = list(columns)
        self._resize()

    def set_rows(self, rows: Sequence[tuple[str, Sequence[Cell]]]) -> None:
        """Replaces every row; the cursor follows its key if it is still there."""
        current = self.cursor_key
        self.keys = [key for key, _ in rows]
        self.rows = [cells for _, cells in rows]
        if current in self.keys:
            self.cursor = self.keys.index(current)
        self.cursor = max(0, min(self.cursor, len(self.rows) - 1))
        self._resize()

    @property
    def cursor_key(self) -> str | None:
        return self.keys[self.cursor] if 0 <= self.cursor < len(self.keys) else None

    def move_to(self, key: str) -> None:
        if key in self.keys:
            self.cursor = self.keys.index(key)
            self._show_cursor()

    def _resize(self) -> None:
        self.virtual_size = Size(self.line_width, len(self.rows) + 1)
        self.refresh()

    # -- drawing --------------------------------------------------------------

    def notify_style_update(self) -> None:
        self._looks = None
        super().notify_style_update()

    def on_focus(self) -> None:
        self._looks = None

    def on_blur(self) -> None:
        self._looks = None

    def looks(self) -> tuple[Style, Style, Style]:
        if self._looks is None:
            base = self.rich_style
            self._looks = (base, base + self.get_component_rich_style("grid--header"),
                           base + self.get_component_rich_style("grid--cursor"))
        return self._looks

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        base, header, cursor = self.looks()
        if y == 0:
            strip = self._line([c.header for c in self.columns], header)
        else:
            i = scroll_y + y - 1
            if not 0 <= i < len(self.rows):
                return Strip.blank(self.size.width, base)
            strip = self._line(self.rows[i], cursor if i == self.cursor else base)
        return strip.crop_extend(scroll_x, scroll_x + self.size.width, base)

    def _line(self, cells: Sequence[Cell], style: Style) -> Strip:
        segments = [Segment(" ")]
        for col, cell in zip(self.columns, cells, strict=False):
            segments += fit(cell, col.width, col.right)
            segments.append(Segment(" "))
        return Strip(Segment.apply_style(segments, style), self.line_width)

    # -- moving ---------------------------------------------------------------

    def _show_cursor(self) -> None:
        """Scrolls so the cursor's row is on screen (below the header)."""
        visible = max(self.size.height - 1, 1)
        top = round(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False)
        self.refresh()

    def action_move(self, by: int) -> None:
        if self.rows:
            self.cursor = max(0, min(self.cursor + by, len(self.rows) - 1))
            self._show_cursor()

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(self.size.height - 2, 1))

    def action_select(self) -> None:
        if self.cursor_key is not None:
            self.post_message(self.Selected(self, self.cursor_key))

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            self._click_header(event.x + round(self.scroll_x))
            return
        i = round(self.scroll_y) + event.y - 1
        if 0 <= i < len(self.rows):
            already = i == self.cursor
            self.cursor = i
            self.refresh()
            if already:
                self.action_select()

    def _click_header(self, x: int) -> None:
        edge = 1
        for index, col in enumerate(self.columns):
            edge += col.width + 1
            if x < edge:
                self.post_message(self.HeaderClicked(self, index))
                return
