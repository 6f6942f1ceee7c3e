"""The web tests' browser and programs: Debian's chromium, headless, driven by Playwright (never
a browser Playwright downloads), and `ulma run --web` in a subprocess of its own session."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser import ARGS as CHROMIUM_ARGS
from tests.browser import CHROMIUM
from tests.conftest import kill_group, missing_dependency, subprocess_env, ulma_command

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

PROGRAMS = Path(__file__).resolve().parent / "programs"
URL = re.compile(r"ulma: web view at (http://\S+)")
START_TIMEOUT = 30.0
FINISH_TIMEOUT = 60.0


@pytest.fixture
def browser_context(tmp_path: Path) -> Iterator[BrowserContext]:
    """A fresh headless chromium (its own user-data-dir), with Playwright."""
    if not os.path.exists(CHROMIUM):
        missing_dependency("needs Debian's chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_dependency("needs Python's playwright (pip install playwright; never `playwright install`)")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True, viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            context.close()


class WebRun:
    """`ulma run --web PROGRAM STOPFILE` (or another ulma command, `args`) in its own session;
    `url` once it printed it."""

    def __init__(self, program: str, tmp_path: Path, *extra: str, args: list[str] | None = None) -> None:
        self.stop_file = tmp_path / f"stop-{program}"
        cmd = ulma_command(args or ["run", "--web", *extra, str(PROGRAMS / program), str(self.stop_file)])
        self.proc = subprocess.Popen(cmd, env=subprocess_env({"ULMA_NO_BROWSER": "1"}),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.stderr_lines: list[str] = []
        self._out: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self._out_reader = threading.Thread(target=self._read_out, daemon=True)
        self._out_reader.start()
        self.url = self._wait_for_url()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._lines.put(line)
        self._lines.put(None)

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        self._out.append(self.proc.stdout.read())

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            if line is None:
                break
            self.stderr_lines.append(line)
            found = URL.search(line)
            if found:
                return found.group(1)
        self.kill()
        pytest.fail("`ulma run --web` printed no address:\n" + "".join(self.stderr_lines))

    def finish(self) -> tuple[int, str, str]:
        """Lets the program end (its stop file) and returns its exit code, stdout and ulma's stderr."""
        self.stop_file.touch()
        try:
            self.proc.wait(timeout=FINISH_TIMEOUT)  # both pipes are read by threads of ours
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("`ulma run --web` did not end after its program was told to stop")
        while (line := self._lines.get(timeout=10)) is not None:
            self.stderr_lines.append(line)
        self._out_reader.join(10)
        return self.proc.returncode, "".join(self._out), "".join(self.stderr_lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            kill_group(self.proc.pid)
            self.proc.wait(10)


@pytest.fixture
def web_run(tmp_path: Path) -> Iterator[WebRun]:
    """hot.py under `ulma run --web`; killed if the test leaves it running."""
    run = WebRun("hot.py", tmp_path)
    try:
        yield run
    finally:
        run.kill()
