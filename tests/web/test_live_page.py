"""The live browser view end to end: a real program under `ulma run --web`, its page in headless
chromium."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.web.conftest import WebRun

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

SHOT_COPY = "ULMA_WEB_SHOT"  # set to a path: the screenshot is copied there too (docs/web-view.png)
WAIT_MS = 20_000


def open_page(context: BrowserContext, url: str) -> Page:
    """The page, once it drew a snapshot in which hot has been called a few times."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#table tbody tr')].some("
        "tr => tr.dataset.name === 'hot' && parseInt(tr.children[2].textContent.replace(/,/g, '')) >= 5)",
        timeout=WAIT_MS)
    assert errors == []
    return page


def calls_of(page: Page, name: str) -> int:
    text = page.locator(f'#table tbody tr[data-name="{name}"] td').nth(2).inner_text()
    return int(text.replace(",", "").split("+")[0])


def frame_width(page: Page, name: str) -> float:
    width = page.locator(f'#flame g.frame[data-name="{name}"] rect.edge').first.get_attribute("width")
    assert width is not None
    return float(width)


def test_the_page_shows_the_hot_function_first_by_self_time(web_run: WebRun, browser_context: BrowserContext,
                                                            tmp_path: Path) -> None:
    page = open_page(browser_context, web_run.url)
    page.locator("#table th", has_text=re.compile(r"^self$")).click()  # most self time first
    page.wait_for_timeout(1200)  # a couple more refreshes: the figures settle
    first = page.locator("#table tbody tr").first
    assert first.get_attribute("data-name") == "hot"
    # hot's frame in the icicle, drawn in the four-way split's colours (CPU red first)
    assert page.locator('#flame g.frame[data-name="hot"]').count() >= 1
    assert frame_width(page, "hot") > 0.4 * frame_width(page, "main")
    assert page.locator("#health").inner_text().count("events/s") == 1
    shot = tmp_path / "live.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get(SHOT_COPY):
        shutil.copyfile(shot, os.environ[SHOT_COPY])
    code, out, _err = web_run.finish()
    assert (code, out.split()[0]) == (3, "rounds")


def test_a_click_on_a_frame_zooms_into_it(web_run: WebRun, browser_context: BrowserContext) -> None:
    page = open_page(browser_context, web_run.url)
    full = frame_width(page, "all")
    before = frame_width(page, "hot")
    assert before < 0.99 * full
    page.locator('#flame g.frame[data-name="hot"]').first.click()
    assert abs(frame_width(page, "hot") - full) < 1.0  # hot now spans the whole width
    assert "zoomed into <module> → main → hot" in page.locator("#crumbs").inner_text()
    page.wait_for_timeout(1200)  # and stays zoomed as new snapshots come
    assert abs(frame_width(page, "hot") - full) < 1.0
    page.locator("#unzoom").click()
    assert frame_width(page, "hot") < 0.99 * full


def test_clear_starts_the_counts_again(web_run: WebRun, browser_context: BrowserContext) -> None:
    page = open_page(browser_context, web_run.url)
    page.wait_for_function(  # a few seconds of calls (about 200 a second)
        "() => parseInt(document.querySelector('#table tbody tr[data-name=\"hot\"]').children[2]"
        ".textContent.replace(/,/g, '')) >= 600", timeout=WAIT_MS)
    before = calls_of(page, "hot")
    page.locator("#clear").click()
    page.wait_for_function("() => document.querySelector('#notice').textContent === 'cleared'",
                           timeout=WAIT_MS)
    updates = int(page.evaluate("document.body.dataset.updates"))
    page.wait_for_function(f"() => +document.body.dataset.updates > {updates}", timeout=WAIT_MS)
    assert "since the last clear" in page.locator("#status").inner_text()
    after = calls_of(page, "hot") if page.locator('#table tbody tr[data-name="hot"]').count() else 0
    assert after < before / 2, (before, after)  # at most a refresh or two of calls since the clear


def test_switching_a_function_off_shows_it_off(web_run: WebRun, browser_context: BrowserContext) -> None:
    page = open_page(browser_context, web_run.url)
    row = page.locator('#table tbody tr[data-name="cold"]')
    row.locator("button", has_text="off").click()
    page.wait_for_function(
        "() => document.querySelector('#table tbody tr[data-name=\"cold\"] .mark')?.textContent === 'off'",
        timeout=WAIT_MS)
    frozen = calls_of(page, "cold")
    page.wait_for_timeout(1200)
    assert calls_of(page, "cold") == frozen  # no more calls counted while it is off
    assert calls_of(page, "hot") > frozen  # while the program goes on


def test_pause_stops_redrawing_and_resume_goes_on(web_run: WebRun, browser_context: BrowserContext) -> None:
    page = open_page(browser_context, web_run.url)
    page.locator("#pause").click()
    paused_at = int(page.evaluate("document.body.dataset.updates"))
    page.wait_for_timeout(1500)  # three refreshes come, none is drawn
    assert int(page.evaluate("document.body.dataset.updates")) == paused_at
    assert "paused" in page.locator("#status").inner_text()
    page.locator("#pause").click()  # now "resume"
    page.wait_for_function(f"() => +document.body.dataset.updates > {paused_at}", timeout=WAIT_MS)


def test_closing_the_page_leaves_the_program_running(web_run: WebRun,
                                                     browser_context: BrowserContext) -> None:
    page = open_page(browser_context, web_run.url)
    page.close()
    time.sleep(1.0)
    assert web_run.proc.poll() is None  # still running, still profiled
    code, out, err = web_run.finish()
    assert code == 3
    assert re.fullmatch(r"rounds \d+\n", out)
    assert re.search(r"^hot\s", err, re.MULTILINE)  # the report follows at the end
