"""The end-of-run report at 80 and 120 columns over the made-up run of synthetic.py: held against
golden text files (tests/views/golden; ULMA_UPDATE_GOLDEN=1 rewrites them, to be read before
committing) and, so that a golden file written from a broken layout cannot pass, checked in words:
no line past the width, the % column and the bar on every row, names whole, paths short."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

from tests.views import synthetic
from ulma.views.report import PIPED_WIDTH, page_width, print_report

GOLDEN = Path(__file__).resolve().parent / "golden"
WIDTHS = [80, 120]


def report(width: int | None, color: bool | None = False) -> str:
    out = io.StringIO()
    print_report(synthetic.profile(), out, width=width, color=color, cwd=synthetic.CWD)
    return out.getvalue()


def table_rows(text: str) -> list[str]:
    """The table's lines under its rule, up to the legend."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("─")) + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("bar:"))
    return lines[start:end]


@pytest.mark.parametrize("width", WIDTHS)
def test_the_report_matches_its_golden_text(width: int) -> None:
    golden = GOLDEN / f"report_{width}.txt"
    text = report(width)
    if os.environ.get("ULMA_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"the report at {width} columns changed:\n{text}"


@pytest.mark.parametrize("width", WIDTHS)
def test_the_report_fits_its_width_with_percent_and_bar_on_every_row_and_names_whole(width: int) -> None:
    text = report(width)
    assert all(len(line) <= width for line in text.splitlines()), text
    header = next(line for line in text.splitlines() if line.startswith("function"))
    assert re.search(r"\s%\s", header) and "split" in header, header
    rows = table_rows(text)
    for name, *_ in synthetic.FUNCTIONS:
        first = next((i for i, row in enumerate(rows) if row.startswith(name[:20])), None)
        assert first is not None, (name, text)
        # a name longer than its column wraps onto the next lines: whole, never cut
        assert name in "".join(row.split("  ")[0].strip() for row in rows[first:first + 3]), (name, text)
    crunch = next(row for row in rows if row.startswith("crunch"))
    assert "145.0" in crunch and "C" * 9 in crunch.split("145.0")[1], crunch  # 2.9 s of 2 s: a full bar
    assert not any(synthetic.STDLIB in row or synthetic.PACKAGES in row or synthetic.CWD in row
                   for row in rows), text
    assert "bar: C CPU  o overhead  w waiting  u unmeasured" in text  # piped: letters, told apart
    assert "█" not in text


def test_at_120_columns_no_row_wraps_and_the_paths_show() -> None:
    rows = table_rows(report(120))
    assert len(rows) == len(synthetic.FUNCTIONS) + 1  # one line each (the long name: two)
    assert any("<stdlib>/threading.py:629" in row for row in rows)
    assert any("requests/sessions.py:500" in row for row in rows)
    assert any("app/server.py:88" in row for row in rows)


def test_piped_the_report_is_as_wide_as_columns_says_else_wide() -> None:
    assert page_width(terminal=False, environ={"COLUMNS": "80"}) == 80
    assert page_width(terminal=False, environ={}) == PIPED_WIDTH
    assert page_width(terminal=True, environ={"COLUMNS": "80"}) is None  # the terminal's own


def test_in_colour_the_bar_is_drawn_in_blocks() -> None:
    text = report(120, color=True)
    assert "█" in text and "\x1b[" in text
