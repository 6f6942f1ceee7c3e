"""`ulma collect --web`: two programs stream to the collector (`ulma run --to`); its page lists both
processes, shows each one's hot function with the calls that run's own --json report counts, and
all of them added up, its icicle nested by the streamed call edges; the token gate applies; there is
nothing to clear or switch off."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from tests.conftest import ulma_command
from tests.fleet.helpers import Collector, calls, env, processes

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

WAIT_MS = 30_000
PROGRAM = """\
import os, sys, time

def hot(n):
    return sum(range(n))

def main(rounds):
    for _ in range(rounds):
        for _ in range(20):
            hot(500)
        time.sleep(0.01)

print(os.getpid(), flush=True)
main(int(sys.argv[1]))
"""


def hot_calls(page: Page) -> int | None:
    row = page.locator('#table tbody tr[data-name="hot"]')
    if row.count() == 0:
        return None
    return int(row.locator("td").nth(2).inner_text().replace(",", "").split("+")[0])


def wait_for_hot(page: Page, expected: int) -> None:
    """The collector may lag behind: until the page shows the final count (or the wait ends)."""
    page.wait_for_function(
        "(n) => [...document.querySelectorAll('#table tbody tr')].some(tr => tr.dataset.name === 'hot' "
        "&& parseInt(tr.children[2].textContent.replace(/,/g, '')) === n)", arg=expected, timeout=WAIT_MS)


def test_the_collector_page_shows_each_process_and_all_merged(tmp_path: Path,
                                                             browser_context: BrowserContext) -> None:
    program = tmp_path / "prog.py"
    program.write_text(PROGRAM)
    collector = Collector(tmp_path, events=False, extra=["--web", "--no-table"])
    try:
        (url,) = [m.group(1) for line in collector.lines if (m := re.search(r"web view at (\S+)", line))]
        with_token = url
        without = url.split("?")[0]
        try:
            urllib.request.urlopen(without, timeout=10)
            raise AssertionError("the page was served without its token")
        except urllib.error.HTTPError as exc:
            assert exc.code == 403
        try:
            urllib.request.urlopen(without + "?token=not-it", timeout=10)
            raise AssertionError("the page was served with a wrong token")
        except urllib.error.HTTPError as exc:
            assert exc.code == 403
        procs = [subprocess.Popen(ulma_command(["run", "--no-live", "--to", collector.address,
                                                "--json", str(tmp_path / f"local{i}.json"),
                                                str(program), str(rounds)]),
                                  env=env(ULMA_NO_BROWSER="1"), cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for i, rounds in enumerate((30, 55))]
        results = [p.communicate(timeout=120) for p in procs]
        for p, (_, err) in zip(procs, results, strict=True):
            assert p.returncode == 0, err
        pids = [int(out.split()[0]) for out, _ in results]
        expected = [calls(json.loads((tmp_path / f"local{i}.json").read_text())["functions"])
                    for i in range(2)]
        hot = [next(n for (name, _, _), n in e.items() if name == "hot") for e in expected]
        assert hot[0] != hot[1]

        page = browser_context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(with_token)
        page.wait_for_function("() => document.querySelectorAll('#view option').length === 3",
                               timeout=WAIT_MS)
        labels = page.locator("#view option").all_inner_texts()
        assert labels[0].startswith("all (merged): 2 processes"), labels
        for pid in pids:
            assert sum(f"pid {pid}:" in label for label in labels) == 1, labels
        assert page.locator("#clear").is_hidden()  # nothing to clear in another host's program
        assert page.locator("#table th", has_text="trace").count() == 0  # nor to switch off
        for pid, n in zip(pids, hot, strict=True):
            value = page.locator("#view option", has_text=f"pid {pid}:").get_attribute("value")
            assert value is not None
            page.select_option("#view", value)
            wait_for_hot(page, n)
            assert hot_calls(page) == n
        page.select_option("#view", "all")
        wait_for_hot(page, sum(hot))
        # the icicle nests by the streamed caller-callee totals, both processes' added up: hot
        # under main under the module (each function's self time under the root, flat, before)
        depths = {name: page.locator(f'#flame g.frame[data-name="{name}"]').first.get_attribute("data-depth")
                  for name in ("<module>", "main", "hot")}
        assert depths == {"<module>": "1", "main": "2", "hot": "3"}, depths
        # the page said what --json says too
        _, _, doc = collector.stop()
        assert errors == []
    finally:
        collector.kill()
    rows = {p["pid"]: p for p in processes(doc)}
    for pid, e in zip(pids, expected, strict=True):
        assert calls(rows[pid]["functions"]) == e
