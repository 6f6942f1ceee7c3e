"""Fitting a table of functions, and lines of items, to the terminal's width.

Both the live view and the end-of-run report show the same table: a function
column (the name, then where it is), numbers, and the time-split bar.  At 80
columns not everything fits; what gives way, in order:

1. the function column, down to `NAME_PREFERRED` cells (its path is shortened
   first, the name is kept: see `paths.elide`);
2. the bar, down to `BAR_MIN` cells (coarser, but still there);
3. the least useful numbers (calls/s, then per call), one at a time;
4. below 80 columns only: the function column and the bar to their floors,
   then more numbers.

The bar and the % column never give way: they are the point of the table.

`pack` wraps a line of items (``key  meaning``, ``label value``) at the
gaps between items, never inside one, for the header and the footer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text

NAME_PREFERRED = 32  # below this, numbers drop before the name shrinks more
NAME_MIN = 24  # the floor while there are numbers left to drop
NAME_FLOOR = 12  # the floor when nothing is left to drop (under 80 columns)
BAR_MAX = 20
BAR_MIN = 10
BAR_FLOOR = 4


@dataclass(frozen=True, slots=True)
class Number:
    """A numeric column: `drop` 0 never drops; otherwise the lowest drops first."""

    key: str
    width: int
    drop: int = 0


@dataclass(frozen=True, slots=True)
class Fit:
    shown: tuple[str, ...]  # the numeric columns kept, in their order
    name_width: int
    bar_width: int


def fit(width: int, numbers: Sequence[Number], gap: int = 1) -> Fit:
    """How a table of `width` cells is laid out: the function column first,
    then the numbers kept, then the bar, with `gap` cells after each column
    (`width` is what the columns and their gaps may take together)."""
    kept = list(numbers)

    def room() -> int:  # for the name and the bar
        return width - sum(n.width + gap for n in kept) - 2 * gap

    droppable = sorted((n for n in numbers if n.drop), key=lambda n: n.drop)
    while room() < NAME_PREFERRED + BAR_MIN and droppable:
        kept.remove(droppable.pop(0))
    left = room()
    if left >= NAME_PREFERRED + BAR_MIN:
        bar = min(BAR_MAX, left - NAME_PREFERRED)
    elif left >= NAME_MIN + BAR_MIN:
        bar = BAR_MIN
    else:
        bar = max(BAR_FLOOR, min(BAR_MIN, left - NAME_FLOOR))
    return Fit(tuple(n.key for n in kept), max(NAME_FLOOR, left - bar), bar)


def pack(items: Sequence[Text], width: int, gap: str = "  ") -> Text:
    """The items on as few lines of `width` cells as they take, broken only
    between items; an item longer than a line is cut with an ellipsis."""
    lines: list[Text] = []
    line = Text()
    for item in items:
        if not item.plain:
            continue
        if line.plain and line.cell_len + len(gap) + item.cell_len > width:
            lines.append(line)
            line = Text()
        if line.plain:
            line.append(gap)
        line.append_text(item)
    if line.plain:
        lines.append(line)
    for text in lines:
        text.truncate(max(width, 1), overflow="ellipsis")
    return Text("\n").join(lines)
