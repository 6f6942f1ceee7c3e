"""`ulma attach PID --web`: the live page over a program that was already running; detaching ends
the page, never the program."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tests.conftest import agent_target
from tests.web.conftest import WebRun

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

TARGET = Path(__file__).resolve().parents[1] / "programs" / "attach_target.py"


def test_attach_web_shows_the_running_program_and_detaches_leaving_it_alone(
        tmp_path: Path, browser_context: BrowserContext) -> None:
    with agent_target(TARGET, tmp_path) as target:
        pid = target.proc.pid
        run = WebRun("attach", tmp_path, args=["attach", str(pid), "--web", "--duration", "4", "--no-report"])
        try:
            page = browser_context.new_page()
            page.goto(run.url)
            page.wait_for_function("() => [...document.querySelectorAll('#table tbody tr')]"
                                   ".some(tr => tr.dataset.name === 'tick')", timeout=20_000)
            assert f"attached to process {pid}" in page.locator("#title").inner_text()
            code, _out, err = run.finish()  # --duration: it detaches by itself
        finally:
            run.kill()
        assert code == 0, err
        assert "detached; the program goes on" in err
        page.wait_for_function("() => document.body.dataset.closed === '1'", timeout=10_000)
        assert target.proc.poll() is None
        code, out, _ = target.finish()
        assert code == 3 and out.startswith("ticks=")
