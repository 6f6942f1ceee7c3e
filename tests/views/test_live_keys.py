"""The keys `?` (help) and `i` (idle functions hidden), over the made-up run of synthetic.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from rich.console import Console
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import Static

from tests.views import synthetic
from ulma.views.help import HelpScreen
from ulma.views.live import LiveView, ViewSettings

# how a key of BINDINGS is written where people read it
SHOWN_AS = {"slash": "/", "question_mark": "?", "escape": "esc"}


def drive(body: Callable[[LiveView, Pilot[None]], Coroutine[Any, Any, None]],
          size: tuple[int, int] = (120, 40)) -> None:
    app = LiveView(synthetic.source(), ViewSettings(title="app/main.py", refresh_seconds=None,
                                                    cwd=synthetic.CWD, plain=False))

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            app.refresh_now()  # the second snapshot
            await pilot.pause()
            await body(app, pilot)

    asyncio.run(main())


def text_of(static: Static, width: int) -> str:
    console = Console(width=width, record=True, file=None, color_system=None)
    console.print(static.content)
    return console.export_text()


def test_question_mark_shows_every_key_of_the_view_and_what_percent_means() -> None:
    async def body(app: LiveView, pilot: Pilot[None]) -> None:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = text_of(app.screen.query_one("#help-text", Static), 110)
        keys_listed = set()
        for line in shown.splitlines():  # "      x X  switch ..." : the keys before the first gap of two
            keys_listed.update(line.strip().split("  ")[0].split())
        for binding in LiveView.BINDINGS:
            assert isinstance(binding, Binding)
            key = SHOWN_AS.get(binding.key, binding.key)
            assert key in keys_listed, f"key {key} ({binding.action}) is not in the help:\n{shown}"
        flat = " ".join(shown.split())
        assert "self time over the time covered" in flat
        assert "more than 100 %" in flat and "threads" in flat
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)

    drive(body, size=(80, 24))


def test_the_footer_names_the_help_key() -> None:
    async def body(app: LiveView, pilot: Pilot[None]) -> None:
        assert "? help" in str(app.query_one("#keys", Static).render())

    drive(body)


def test_i_hides_the_functions_that_mostly_wait_says_so_and_i_again_shows_them() -> None:
    async def body(app: LiveView, pilot: Pilot[None]) -> None:
        names = [k[0] for k in app.shown]
        assert "Event.wait" in names  # 99 % of its time waiting: shown by default
        await pilot.press("i")
        # Event.wait waited 99 % of its time: hidden.  Session.request (65 %) and main (50 %) stay.
        assert [k[0] for k in app.shown] == [n for n in names if n != "Event.wait"]
        assert "idle hidden: 1" in str(app.query_one("#health", Static).render())
        await pilot.press("i")
        assert [k[0] for k in app.shown] == names
        assert "idle hidden" not in str(app.query_one("#health", Static).render())

    drive(body)
