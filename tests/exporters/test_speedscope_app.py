"""The Chrome export opens in speedscope itself -- the app from its npm package, in headless
Chromium -- whatever the file is called: speedscope picks its importer by the name first
(``*.chrome.json`` is a Chrome timeline to it), by the content otherwise."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser import chromium, serving

if TYPE_CHECKING:
    from playwright.sync_api import Dialog
from tests.exporters.conftest import Recording

RecordFn = Callable[[str], Recording]
ExportFn = Callable[[Recording, str], Path]


@pytest.mark.parametrize("name", ["threads.chrome.json", "threads.json", "trace"])
def test_speedscope_opens_the_chrome_export_by_any_name_and_lists_its_functions(
        name: str, record: RecordFn, export: ExportFn, speedscope_app: Path, tmp_path: Path) -> None:
    recording = record("threads.py")
    site = tmp_path / "site"
    shutil.copytree(speedscope_app, site)
    shutil.copy(export(recording, "chrome"), site / name)
    with serving(site) as base, chromium() as browser:
        page = browser.new_page()
        said: list[str] = []
        alerts: list[str] = []

        def alert(dialog: Dialog) -> None:
            alerts.append(dialog.message)
            dialog.dismiss()

        page.on("console", lambda m: said.append(m.text))
        page.on("dialog", alert)
        page.goto(f"{base}/index.html#profileURL=/{name}")
        deadline = time.monotonic() + 60
        while not alerts and time.monotonic() < deadline and not any(s.startswith("Importing") for s in said):
            page.wait_for_timeout(100)
        page.wait_for_timeout(500)
        assert not alerts, alerts
        assert "Something went wrong" not in page.content(), said
        assert any(s.startswith("Importing as Chrome Timeline") for s in said), said
        # one profile per thread the program ran (its main thread first), named after it
        threads = recording.report["threads"]
        assert threads == 5
        page.get_by_text(re.compile(rf"main thread \d+ \(1/{threads}\)")).wait_for(timeout=20_000)
        page.get_by_text("Sandwich").click()  # the table of functions: DOM text, not a canvas
        page.get_by_text("main", exact=True).first.wait_for(timeout=20_000)
        page.screenshot(path=str(tmp_path / "speedscope.png"))
