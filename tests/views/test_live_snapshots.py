"""Pictures of the live view at 80x24, 120x40 and 200x50 over a made-up run (tests/views/synthetic.py),
held against the SVGs under __snapshots__ (pytest-textual-snapshot; after a change that is meant,
look at the new pictures and accept them with --snapshot-update).  Besides the pictures, what
must hold at every size is checked in words: the bar and the % column show, names are not cut
short, the header and the footer are whole."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from tests.views import synthetic
from ulma.views.grid import Grid
from ulma.views.live import LiveView, ViewSettings

SIZES = [(80, 24), (120, 40), (200, 50)]
DOCS_SVG = Path(__file__).resolve().parents[2] / "docs" / "live-view.svg"
SNAPSHOTS = Path(__file__).resolve().parent / "__snapshots__" / "test_live_snapshots"

SnapCompare = Callable[..., bool]


def view(plain: bool = False) -> LiveView:
    return LiveView(synthetic.source(), ViewSettings(title="app/main.py", refresh_seconds=None,
                                                     cwd=synthetic.CWD, plain=plain))


async def second_snapshot(pilot: Pilot[None]) -> None:
    """The view shows its first snapshot on mount; the second one has calls/s."""
    app = pilot.app
    assert isinstance(app, LiveView)
    app.refresh_now()
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_the_live_view_at_each_size_matches_its_picture(snap_compare: SnapCompare,
                                                        size: tuple[int, int]) -> None:
    assert snap_compare(view(), terminal_size=size, run_before=second_snapshot)


def test_the_picture_in_the_docs_is_the_current_120x40_snapshot() -> None:
    snapshot = SNAPSHOTS / "test_the_live_view_at_each_size_matches_its_picture[120x40].svg"
    assert DOCS_SVG.read_text() == snapshot.read_text(), (
        "docs/live-view.svg is stale: copy the 120x40 snapshot over it")


Drawn = dict[str, list[str]]  # the table's, the header's and the footer's lines


def on_screen(size: tuple[int, int], plain: bool = False) -> tuple[LiveView, Drawn]:
    """The view at `size` after its second snapshot, and its lines as drawn."""
    app = view(plain)
    drawn: Drawn = {}

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await second_snapshot(pilot)
            grid = app.query_one("#functions", Grid)
            drawn["table"] = [grid.render_line(y).text for y in range(grid.size.height)]
            for part in ("health", "keys"):
                drawn[part] = str(app.query_one(f"#{part}", Static).render()).splitlines()

    asyncio.run(main())
    return app, drawn


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_at_every_size_the_bar_and_percent_show_and_names_are_whole(size: tuple[int, int]) -> None:
    app, drawn = on_screen(size)
    header, rows = drawn["table"][0], drawn["table"][1:]
    assert "%⁷" in header and "split" in header, header
    by_name = {name: next((r for r in rows if r.startswith(f" {name[:20]}")), None)
               for name, *_ in synthetic.FUNCTIONS}
    for name, row in by_name.items():
        assert row is not None, (name, rows)
        # names are whole up to the function column's width (24 at least), cut with an ellipsis only
        assert app.name_width >= 24
        whole = name if len(name) <= app.name_width else name[:app.name_width - 1] + "…"
        assert row.startswith(f" {whole}"), (name, row)
    # every row has a bar: the busiest function's is long, drawn in blocks, right of its %
    crunch = by_name["crunch"]
    assert crunch is not None and "145.0" in crunch and "██████████" in crunch.split("145.0")[1], crunch
    assert by_name["main"] is not None and "██" in by_name["main"]
    # paths short: relative to the working directory, the standard library, site-packages
    assert not any(synthetic.STDLIB in r or synthetic.PACKAGES in r or synthetic.CWD in r for r in rows)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_at_every_size_the_header_and_footer_fit_and_the_footer_names_help_and_the_legend(
        size: tuple[int, int]) -> None:
    _, drawn = on_screen(size)
    width = size[0] - 2  # the padding
    for part in ("health", "keys"):
        lines = drawn[part]
        assert all(len(line) <= width for line in lines), (part, lines)
        assert not any(line.endswith("…") for line in lines), (part, lines)  # wrapped, not cut
    footer = " ".join(drawn["keys"])
    for words in ("? help", "q quit", "i hide idle", "█ CPU", "█ overhead", "█ waiting", "█ unmeasured"):
        assert words in footer, (words, footer)
    header = " ".join(drawn["health"])
    for words in ("pid 4242", "sort self ▼", "ring fill 0.2%", "threads 5"):
        assert words in header, (words, header)


def test_without_colour_the_bar_and_the_legend_use_a_letter_per_part() -> None:
    _, drawn = on_screen((120, 40), plain=True)
    lines = drawn["table"]
    bars = {r.split()[0]: r.rstrip().rsplit(" ", 1)[-1] for r in lines[1:] if r.strip()}
    # the whole run is the 20-cell bar.  Session.request: 900 ms, 9 cells, of which 30 % CPU (2.7),
    # 5 % overhead (0.45), 65 % waiting (5.85): by largest remainder 3 C, 0 o, 6 w.  crunch: 2.9 s in
    # four threads, capped at 20 cells, 96 % CPU (19.2), 4 % overhead (0.8): 19 C, 1 o.
    assert bars["Session.request"] == "CCCwwwwww", bars
    assert bars["crunch"] == "C" * 19 + "o", bars
    footer = " ".join(drawn["keys"])
    assert "C CPU" in footer and "o overhead" in footer and "w waiting" in footer and "u unmeasured" in footer
    assert "█" not in footer and not any("█" in r for r in lines[1:])
