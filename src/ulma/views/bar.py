"""The horizontal time bar of a table row: a function's total time as a box
split four ways -- CPU red, call overhead yellow, waiting blue, unmeasured
white (excluded callees) -- all rows on one length scale.  Without CPU
readings CPU and waiting cannot be told apart: that part is drawn as one.
On the CPU clock the bar is the CPU part alone, on the same scale.

Without colour (piped, NO_COLOR, TERM=dumb) four runs of the same block
would read as one: each part is then drawn with a letter of its own
(``CCCCoowwu``), and the legend says which is which."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich.text import Text

from ulma.monitor.profile import FunctionStats


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    style: str
    glyph: str  # drawn without colour: one letter per part, all different


FOUR_WAY = (Part("CPU", "red", "C"), Part("overhead", "yellow", "o"), Part("waiting", "blue", "w"),
            Part("unmeasured", "white", "u"))
UNSPLIT = (Part("CPU or waiting", "magenta", "x"), Part("overhead", "yellow", "o"),
           Part("unmeasured", "white", "u"))
CPU_ONLY = (FOUR_WAY[0],)


def parts_for(split_known: bool, clock: str = "wall") -> tuple[Part, ...]:
    """The bar's parts.  The CPU clock needs CPU readings (split_known); the
    caller falls back to the wall clock without them."""
    if clock == "cpu" and split_known:
        return CPU_ONLY
    return FOUR_WAY if split_known else UNSPLIT


def split_values(f: FunctionStats, split_known: bool, clock: str = "wall") -> list[float]:
    """f's total time in the order of parts_for(split_known, clock)."""
    if clock == "cpu" and split_known:
        return [f.cpu_ns]
    if split_known:
        return [f.cpu_ns, f.overhead_ns, f.wait_ns, f.unmeasured_ns]
    return [f.cpu_ns + f.wait_ns, f.overhead_ns, f.unmeasured_ns]

BLOCK = "█"


def cells(values: Sequence[float], full: float, width: int) -> list[int]:
    """Whole cells per segment: the bar is as long as sum(values)/full of
    `width` (at most `width`), split by largest remainder so the segments
    always add up to the bar's length."""
    if full <= 0 or width <= 0:
        return [0] * len(values)
    clean = [max(v, 0.0) for v in values]
    total = sum(clean)
    length = min(width, round(width * total / full))
    if total <= 0 or length <= 0:
        return [0] * len(values)
    exact = [length * v / total for v in clean]
    whole = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: whole[i] - exact[i])
    for i in by_remainder[:length - sum(whole)]:
        whole[i] += 1
    return whole


def colourless(environ: Mapping[str, str] | None = None, tty: bool = True) -> bool:
    """Will colours be lost?  NO_COLOR set (https://no-color.org: any value
    but empty), TERM=dumb, or not a terminal."""
    env = os.environ if environ is None else environ
    return not tty or env.get("NO_COLOR", "") != "" or env.get("TERM", "") == "dumb"


def mark(part: Part, plain: bool) -> str:
    """The cell a part is drawn with: a block in colour, its letter without."""
    return part.glyph if plain else BLOCK


def render(values: Sequence[float], parts: Sequence[Part], full: float, width: int,
           plain: bool = False) -> list[tuple[str, str]]:
    """A bar of `width` cells as (text, style) pieces: one coloured run per
    part (`plain`: one run of the part's letter), blank after."""
    if len(values) != len(parts):
        raise ValueError(f"{len(values)} values for {len(parts)} parts")
    runs = cells(values, full, width)
    pieces = [(mark(part, plain) * n, part.style) for n, part in zip(runs, parts, strict=True) if n]
    return [*pieces, (" " * (width - sum(runs)), "")]


def legend_items(parts: Sequence[Part], plain: bool = False) -> list[Text]:
    """One item per part (its mark and its name), for a line that wraps between items."""
    items = []
    for part in parts:
        item = Text(mark(part, plain), style=part.style)
        item.append(f" {part.name}")
        items.append(item)
    return items


def legend(parts: Sequence[Part], plain: bool = False) -> Text:
    text = Text("bar: ")
    text.append_text(Text("  ").join(legend_items(parts, plain)))
    return text
