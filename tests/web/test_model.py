"""The page's data: the live icicle derived from edge totals against the exact stacks of the same
trace, and names from the program that cannot break out of the page's script."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import run_process, ulma_command
from tests.web.conftest import PROGRAMS
from ulma.exporters.base import exporter_class
from ulma.format import runinfo, stacks, trace
from ulma.monitor.offline import load_profile
from ulma.web import model, page

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Dialog


def record(program: str, folder: Path) -> Path:
    path = folder / f"{program}.ulma"
    result = run_process(ulma_command(["record", "-o", str(path), str(PROGRAMS / program)]))
    assert result.returncode == 0, result.stderr
    return path


def frames_by_path(frame: dict[str, Any], path: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    here = (*path, frame["name"])
    found = {here: frame["value"]}
    for child in frame["children"]:
        found.update(frames_by_path(child, here))
    return found


def exact_tree(path: Path) -> dict[str, Any]:
    """The html export's icicle of the trace (the replay's distinct stacks)."""
    reader = trace.TraceReader(str(path))
    run = runinfo.scan(reader)
    with open("/dev/null", "wb") as sink:
        exporter = exporter_class("html")(run, sink)
        exporter.replayed(stacks.replay(reader, run, stacks.TREE))
    profile = load_profile(trace.TraceReader(str(path)))
    data: dict[str, Any] = exporter.page_data(profile)  # type: ignore[attr-defined]
    return data["flame"]  # type: ignore[no-any-return]


def test_the_edge_icicle_is_the_exact_one_when_a_callee_does_not_depend_on_its_caller(
        tmp_path: Path) -> None:
    path = record("counted.py", tmp_path)  # gamma called from main and from beta, alike each time
    derived = frames_by_path(model.edge_tree(load_profile(trace.TraceReader(str(path)))))
    exact = frames_by_path(exact_tree(path))
    stack = ("all", "<module>", "main", "beta", "gamma", "spin")
    assert stack in derived and ("all", "<module>", "main", "gamma", "spin") in derived
    for key, value in exact.items():
        if value > exact[("all",)] * 0.01:
            assert derived.get(key) == pytest.approx(value, rel=0.03), key


def test_the_edge_icicle_cuts_recursion_and_keeps_its_time(tmp_path: Path) -> None:
    profile = load_profile(trace.TraceReader(str(record("recursive.py", tmp_path))))
    derived = frames_by_path(model.edge_tree(profile))
    fib = next(f for f in profile.functions if f.name == "fib")
    assert max(len(key) for key in derived) == 4  # all, <module>, main, fib: fib is not under fib
    assert derived[("all", "<module>", "main", "fib")] == pytest.approx(fib.total_ns, rel=0.01)


HOSTILE = "</script><script>document.title='pwned'</script><img src=x onerror=alert(1)>"


def hostile_model() -> dict[str, Any]:
    row = {"fid": 1, "name": HOSTILE, "file": "<x>.py", "line": 1, "calls": 1, "resumes": 0,
           "rate": None, "self": 10, "total": 10, "per_call": 10, "share": 1.0, "split": [10, 0, 0, 0],
           "native": False, "mark": ""}
    flame = model.frame("all", "", 0, 0, 10, [10, 0, 0, 0])
    flame["children"].append(model.frame(HOSTILE, "<x>.py", 1, 1, 10, [10, 0, 0, 0]))
    return {"type": "snapshot", "live": False, "title": HOSTILE, "ended": True, "returncode": None,
            "cleared": False, "wall_ns": 10, "split_known": True, "parts": model.parts(True),
            "functions": [row], "flame": flame, "flame_note": "", "health": None,
            "timeline": {"kind": "spans", "note": "", "start": 0, "end": 10,
                         "functions": [{"name": HOSTILE, "part": "CPU"}],
                         "threads": [{"name": HOSTILE, "depth": 1, "spans": [[0, 10, 0, 0]]}]}}


def test_a_function_name_cannot_end_the_pages_script() -> None:
    html = page.render(hostile_model())
    assert html.count("</script>") == 3  # d3, the data and the page's script: none from the data
    assert not re.search(r"<img", html)


def test_a_function_name_is_shown_as_text_in_the_browser(tmp_path: Path,
                                                         browser_context: BrowserContext) -> None:
    file = tmp_path / "hostile.html"
    file.write_text(page.render(hostile_model()))
    tab = browser_context.new_page()
    dialogs: list[str] = []

    def note(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    tab.on("dialog", note)
    tab.goto(file.as_uri())
    tab.wait_for_selector("#table tbody tr")
    assert tab.locator("#table tbody td").first.inner_text() == HOSTILE
    assert tab.locator("#flame g.frame").nth(1).get_attribute("data-name") == HOSTILE
    assert tab.locator("img").count() == 0 and dialogs == []
    assert tab.title() == "ulma: " + HOSTILE
