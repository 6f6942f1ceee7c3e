"""`ulma export --format html`: one file that opens offline in a browser and shows the table (with
the program's own call counts), the flame graph and the threads' timeline."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import run_process, ulma_command
from tests.web.conftest import PROGRAMS

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Route

COUNTS = {"alpha": 7, "beta": 13, "gamma": 29, "main": 1}  # what counted.py calls (it says so)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("html")
    trace, html = folder / "counted.ulma", folder / "counted.html"
    recorded = run_process(ulma_command(["record", "-o", str(trace), str(PROGRAMS / "counted.py")]))
    assert recorded.returncode == 0 and recorded.stdout == "alpha 7 beta 13 gamma 29\n", recorded.stderr
    exported = run_process(ulma_command(["export", str(trace), "--format", "html", "-o", str(html)]))
    assert (exported.returncode, exported.stderr) == (0, "")
    return html


@pytest.fixture
def offline_page(report: Path, browser_context: BrowserContext) -> Iterator[tuple[Page, list[str]]]:
    """The report opened from its file with every other request refused (and noted)."""
    fetched: list[str] = []

    def refuse(route: Route) -> None:
        fetched.append(route.request.url)
        route.abort()

    browser_context.route(re.compile(r"^(?!file:).*"), refuse)
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda req: None if req.url.startswith("file:") else fetched.append(req.url))
    page.goto(report.as_uri())
    page.wait_for_selector("#table tbody tr")
    yield page, fetched
    assert errors == []


def test_the_file_holds_everything_it_needs(report: Path) -> None:
    text = report.read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", text)  # nothing loaded from elsewhere
    assert "default-src 'none'" in text  # and the page may not fetch anything either
    assert report.stat().st_mode & 0o777 == 0o600


def test_the_table_shows_each_function_with_its_calls(offline_page: tuple[Page, list[str]]) -> None:
    page, fetched = offline_page
    shown = {}
    for row in page.locator("#table tbody tr").all():
        cells = row.locator("td").all_inner_texts()
        shown[cells[0].strip()] = int(cells[2].replace(",", ""))
    assert {name: shown.get(name) for name in COUNTS} == COUNTS
    assert fetched == []


def test_the_flame_graph_has_a_frame_per_function_in_four_colours(
        offline_page: tuple[Page, list[str]]) -> None:
    page, _fetched = offline_page
    for name in COUNTS:
        assert page.locator(f'#flame g.frame[data-name="{name}"]').count() >= 1, name
    # gamma is called from beta and from main: a frame on each stack
    assert page.locator('#flame g.frame[data-name="gamma"]').count() == 2
    colours = set(page.locator("#flame g.frame g.parts rect").evaluate_all(
        "rects => rects.filter(r => +r.getAttribute('width') > 0).map(r => r.getAttribute('fill'))"))
    assert "#d9534f" in colours  # CPU (red): the program spins
    legend = page.locator("#legend").inner_text()
    assert all(part in legend for part in ("CPU", "overhead", "waiting", "unmeasured"))


def test_the_timeline_draws_each_threads_frames(offline_page: tuple[Page, list[str]], tmp_path: Path) -> None:
    page, _fetched = offline_page
    lanes = page.locator("#timeline g.lane")
    assert lanes.count() == 1  # one thread
    assert lanes.first.get_attribute("data-thread", timeout=1000) is not None
    spans = page.locator("#timeline rect.span").evaluate_all(
        "rects => rects.map(r => r.querySelector('title').textContent.split('  ')[0])")
    assert spans.count("alpha") == 7  # each call of 20 ms is long enough to be drawn
    assert spans.count("beta") == 13
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
