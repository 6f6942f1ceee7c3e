"""Headless Chromium for the tests that open a page: Debian's chromium, driven by Playwright (never a
browser Playwright downloads).  Where chromium is missing the test skips, or fails in CI
(tests/conftest.py missing_dependency)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tests.conftest import missing_dependency

CHROMIUM = "/usr/bin/chromium"
# Without the networking flags Chromium keeps asking this machine's closed network for updates.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

if TYPE_CHECKING:  # (playwright is imported when a browser is wanted)
    from playwright.sync_api import Browser


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """A fresh headless Chromium (its own empty profile), closed after."""
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        missing_dependency("needs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[str]:
    """`folder` served over HTTP on loopback, a random port; yields its base URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass
