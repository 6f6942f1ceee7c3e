"""The live view, driven with Textual's pilot against a real program under ulma.

tests/programs/live_target.py loops hot() (nearly all the time, one call a round) and spin(), which
calls cold() 50 times a round, until SIGTERM.  The view's timer is off (refresh_seconds=None): each
test takes snapshots with refresh_now() and waits, within a deadline, for the program to have got
far enough.  Stopping the program with SIGSTOP makes "clear history" exact: nothing can arrive
between the clear and the snapshot that must show zeros.
"""

from __future__ import annotations

import ast
import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Log, Static

from ulma.agent import resolve_engine
from ulma.monitor.live import LiveRun
from ulma.monitor.output import Captured
from ulma.monitor.session import Options, Run, Target
from ulma.views.grid import Grid
from ulma.views.live import LiveView, ViewSettings
from ulma.views.live_rows import COLUMN_INDEX, FuncKey, Row, row_id
from ulma.views.units import fmt_ns

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "live_target.py"
SHORT_PROGRAM = PROGRAMS_DIR / "report_hot.py"
DEADLINE = 60.0  # seconds any one wait may take before the test fails
SIZE = (160, 48)

LivePilot = Pilot[None]


def key(name: str) -> FuncKey:
    """The live target's function `name`: (name, file, first line)."""
    lines = PROGRAM.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.startswith(f"def {name}("))
    return (name, str(PROGRAM), line)


HOT, COLD, SPIN, MAIN = key("hot"), key("cold"), key("spin"), key("main")


@contextmanager
def live_run(program: Path = PROGRAM, args: tuple[str, ...] = ("120",),
             options: Options | None = None) -> Iterator[tuple[LiveRun, Captured]]:
    """The program running under ulma, drained by a worker thread; stopped and finished afterwards."""
    captured = Captured()
    run = Run(Target("script", str(program), args), options or Options(engine=resolve_engine("auto")),
              stdin=subprocess.DEVNULL, stdout=captured.stdout.file, stderr=captured.stderr.file)
    live = LiveRun(run).start()
    try:
        yield live, captured
    finally:
        if run.proc.poll() is None:
            with suppress(ProcessLookupError):
                run.proc.send_signal(signal.SIGCONT)  # a stopped program would never see SIGTERM
                run.proc.terminate()
        if not live.done.wait(DEADLINE):
            run.proc.kill()
            live.done.wait(DEADLINE)
        run.finish()
        captured.close()


def drive(body: Callable[[LiveView, LivePilot], Coroutine[Any, Any, None]],
          live: LiveRun, settings: ViewSettings | None = None) -> LiveView:
    """Runs `body(app, pilot)` against a headless view of `live`."""
    app = LiveView(live, settings or ViewSettings(title="live_target.py", refresh_seconds=None))

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await body(app, pilot)

    asyncio.run(main())
    return app


async def until(app: LiveView, pilot: LivePilot, ready: Callable[[], bool], what: str) -> None:
    """Takes snapshots until `ready()` holds; fails after DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    while True:
        app.refresh_now()
        await pilot.pause()
        if ready():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; rows: {[r.key[0] for r in app.rows][:20]}")
        await pilot.pause(0.05)


def row(app: LiveView, k: FuncKey) -> Row | None:
    return next((r for r in app.rows if r.key == k), None)


def calls(app: LiveView, k: FuncKey) -> int:
    r = row(app, k)
    return r.stats.calls if r else 0


def header(app: LiveView) -> str:
    return str(app.query_one("#health", Static).render())


def test_the_hot_function_is_at_the_top_and_sorting_by_calls_changes_the_order() -> None:
    async def body(app: LiveView, pilot: LivePilot) -> None:
        await until(app, pilot, lambda: calls(app, HOT) >= 3 and calls(app, COLD) >= 300,
                    "three calls of hot() and 300 of cold()")
        assert app.shown[0] == HOT, app.shown[:5]
        assert app.query_one("#functions", Grid).keys[0] == row_id(HOT)  # what the screen shows
        await pilot.press("2")  # sort by calls
        assert app.shown[0] == COLD, app.shown[:5]
        assert "sort calls ▼" in header(app)
        await pilot.press("2")  # again: fewest first
        assert app.shown[-1] == COLD and "sort calls ▲" in header(app)
        await pilot.press("4")  # back to self
        assert app.shown[0] == HOT
        table = app.query_one("#functions", Grid)
        total_x = 1 + sum(c.width + 1 for c in table.columns[:4]) + 2  # inside the 5th column's header
        await pilot.click("#functions", offset=(total_x, 0))
        assert app.sort_index == COLUMN_INDEX["total"] and "sort total ▼" in header(app)

    with live_run() as (live, _):
        drive(body, live)


def test_the_filter_hides_rows_that_do_not_match_and_escape_clears_it() -> None:
    async def body(app: LiveView, pilot: LivePilot) -> None:
        await until(app, pilot, lambda: calls(app, SPIN) >= 1, "a call of spin()")
        everything = len(app.shown)
        await pilot.press("slash", "q")  # typed into the filter box: no quitting
        assert app.is_running and app.needle == "q"
        await pilot.press("backspace", *"spin")
        assert app.shown == [SPIN]
        await pilot.press("enter")  # keeps the filter, closes the box
        assert app.needle == "spin" and app.shown == [SPIN]
        await pilot.press("slash", "backspace", "backspace", "backspace", "backspace", *"live_target.py")
        assert set(app.shown) >= {HOT, COLD, SPIN, MAIN} and len(app.shown) < everything
        assert all("live_target.py" in k[1] for k in app.shown)
        await pilot.press("escape")
        assert app.needle == "" and len(app.shown) == everything
        assert app.is_running

    with live_run() as (live, _):
        drive(body, live)


def wait_stopped(pid: int) -> None:
    """Until the kernel reports the process as stopped (SIGSTOP is asynchronous)."""
    deadline = time.monotonic() + DEADLINE
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert time.monotonic() < deadline, "the program did not stop"
        time.sleep(0.01)


def test_clear_history_zeroes_the_counts_and_they_grow_again() -> None:
    async def body(app: LiveView, pilot: LivePilot) -> None:
        await until(app, pilot, lambda: calls(app, COLD) >= 100, "100 calls of cold()")
        live.run.proc.send_signal(signal.SIGSTOP)
        wait_stopped(live.pid)
        await until(app, pilot, lambda: live.health().fill == 0.0, "the rings to be drained")
        assert calls(app, COLD) >= 100
        await pilot.press("c")
        assert app.rows, "open frames (main, at least) still show, with zero calls"
        assert all(r.stats.calls == 0 and r.stats.resumes == 0 for r in app.rows), [
            (r.key[0], r.stats.calls) for r in app.rows if r.stats.calls]
        assert "since clear" in header(app)
        live.run.proc.send_signal(signal.SIGCONT)
        await until(app, pilot, lambda: calls(app, COLD) >= 50 and calls(app, HOT) >= 1,
                    "counts to grow again")

    with live_run() as (live, _):
        drive(body, live)


def test_the_callers_and_callees_pane_lists_the_right_functions() -> None:
    async def body(app: LiveView, pilot: LivePilot) -> None:
        await until(app, pilot, lambda: calls(app, SPIN) >= 2 and calls(app, HOT) >= 2, "two rounds")
        table = app.query_one("#functions", Grid)
        table.move_to(row_id(SPIN))
        await pilot.press("enter")
        assert app.focus_key == SPIN
        callers, callees = app.query_one("#callers", Grid), app.query_one("#callees", Grid)
        assert callers.keys == [row_id(MAIN)]
        assert callees.keys == [row_id(COLD)]
        assert app.query_one("#links").display
        # Enter on a callee goes there: cold() is called by spin() only.
        callees.focus()
        await pilot.press("enter")
        assert app.focus_key == COLD
        assert callers.keys == [row_id(SPIN)] and callees.keys == []
        assert table.cursor_key == row_id(COLD)  # the table followed
        await pilot.press("escape")
        assert app.focus_key is None and not app.query_one("#links").display

    with live_run() as (live, _):
        drive(body, live)


def test_pause_freezes_the_table_and_the_thread_selector_cycles() -> None:
    async def body(app: LiveView, pilot: LivePilot) -> None:
        await until(app, pilot, lambda: calls(app, HOT) >= 1, "a call of hot()")
        await pilot.press("p")
        frozen = app.rows
        before = calls(app, COLD)
        await until(app, pilot, lambda: live.health().events > app.snap.health.events + 100 if app.snap
                    else False, "more events")
        assert app.rows is frozen and calls(app, COLD) == before and "PAUSED" in header(app)
        await pilot.press("p")
        assert app.rows is not frozen and "PAUSED" not in header(app)
        await pilot.press("t")  # the one thread of the program
        assert app.thread == 0 and "thread #0 (tid" in header(app)
        assert calls(app, HOT) >= 1
        await pilot.press("t")
        assert app.thread is None and "thread all" in header(app)

    with live_run() as (live, _):
        drive(body, live)


def test_ctrl_c_interrupts_the_program_and_the_view_says_how_it_ended() -> None:
    async def body(app: LiveView, pilot: LivePilot) -> None:
        await until(app, pilot, lambda: calls(app, HOT) >= 1, "a call of hot()")
        await pilot.press("ctrl+c")
        await until(app, pilot, live.done.is_set, "the program to end")
        app.refresh_now()  # the end may have come after until()'s last snapshot
        await pilot.pause()
        assert "program was killed by SIGINT" in header(app)
        assert app.is_running  # the view stays until q
        await pilot.press("q")
        assert not app.is_running

    with live_run() as (live, _):
        drive(body, live)
        assert live.returncode == -signal.SIGINT


def test_with_exit_when_done_the_view_closes_itself_and_the_output_pane_shows_the_program_output() -> None:
    with live_run(SHORT_PROGRAM, ()) as (live, captured):
        app = LiveView(live, ViewSettings(refresh_seconds=0.05, exit_when_done=True, output=captured))
        panes: list[Log] = []

        async def main() -> None:
            async with app.run_test(size=SIZE):
                panes.append(app.query_one("#output", Log))
                deadline = time.monotonic() + DEADLINE
                while app.is_running and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)

        asyncio.run(main())
        assert not app.is_running, "the view did not close when the program ended"
        assert live.returncode == 0
        assert [line for line in panes[0].lines if line] == ["5", "5050"]


def test_the_time_bar_is_drawn_in_four_colours_and_w_switches_to_cpu_time() -> None:
    async def body(app: LiveView, pilot: LivePilot) -> None:
        await until(app, pilot, lambda: calls(app, HOT) >= 3, "three calls of hot()")
        # hot() computes: its bar is mostly red (CPU), perhaps with some yellow (overhead); blue
        # (waiting) only for time the kernel says it waited for a CPU on a busy machine, never blocked
        grid = app.query_one("#functions", Grid)
        bar_of = {key: grid.rows[i][-1] for i, key in enumerate(app.shown)}
        widths: dict[str, int] = {}
        for text, style in bar_of[HOT]:
            if text.strip():
                widths[style] = widths.get(style, 0) + len(text.strip())
        assert set(widths) <= {"red", "yellow", "blue"} and widths.get("red", 0) > sum(widths.values()) / 2, \
            bar_of[HOT]
        hot = row(app, HOT)
        assert hot is not None and hot.stats.wait_blocked_ns is not None, hot
        assert hot.stats.wait_blocked_ns <= 0.05 * hot.stats.total_ns, hot.stats
        keys = str(app.query_one("#keys", Static).render())
        assert all(part in keys for part in ("CPU", "overhead", "waiting", "unmeasured"))
        before = row(app, HOT)
        assert before is not None and before.self_time == before.stats.self_ns
        await pilot.press("w")
        after = row(app, HOT)
        assert app.settings.clock == "cpu" and "clock cpu" in header(app)
        assert after is not None and after.self_time == after.stats.self_cpu_ns <= after.stats.self_ns

    with live_run() as (live, _):
        drive(body, live)


CLOCK_PROGRAM = PROGRAMS_DIR / "live_clock.py"
NAP_NS = 100_000_000  # as in live_clock.py: naps() sleeps that long a call


def clock_key(name: str) -> FuncKey:
    lines = CLOCK_PROGRAM.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.startswith(f"def {name}("))
    return (name, str(CLOCK_PROGRAM), line)


NAPS, BURNS, CLOCK_MAIN = clock_key("naps"), clock_key("burns"), clock_key("main")
UNITS = {"ns": 1, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def ns_of(text: str) -> float:
    """A duration as the view draws it ("5.90 s") back in nanoseconds."""
    number, unit = text.split()
    return float(number) * UNITS[unit]


def drawn_row(app: LiveView, k: FuncKey) -> dict[str, Any]:
    """What the table draws for k's row: each column's text, the bar's (cells, style) runs."""
    grid = app.query_one("#functions", Grid)
    cells = grid.rows[grid.keys.index(row_id(k))]
    names = ["function", "calls", "rate", "self", "total", "per_call", "share"]
    shown: dict[str, Any] = {n: "".join(text for text, _ in cell)
                             for n, cell in zip(names, cells, strict=False)}
    shown["bar"] = [(len(text), style) for text, style in cells[-1] if text.strip()]
    return shown


def header_labels(grid: Grid) -> list[str]:
    return [col.header[0][0] for col in grid.columns]


def test_on_the_cpu_clock_every_time_column_counts_cpu_time_and_says_so() -> None:
    """naps() sleeps 100 ms a call: on the CPU clock (w) its self, total, per call, % and bar
    show the little CPU it used, not its sleep; burns() (20 ms of CPU a call) goes above it in
    every time column's sort; the callers pane says its times are wall times."""

    async def body(app: LiveView, pilot: LivePilot) -> None:
        await until(app, pilot, lambda: calls(app, NAPS) >= 4 and calls(app, BURNS) >= 4,
                    "four calls of naps() and of burns()")
        wall = drawn_row(app, NAPS)
        n = int(wall["calls"].replace(",", ""))
        # the program slept that long (the last call may still be open)
        assert ns_of(wall["self"]) >= 0.95 * (n - 1) * NAP_NS, wall
        assert "blue" in {style for _, style in wall["bar"]}, wall  # waiting

        await pilot.press("w")
        assert "clock cpu" in header(app)
        table = app.query_one("#functions", Grid)
        assert header_labels(table)[3:7] == ["cpu self", "cpu total", "cpu/call", "cpu%"]
        assert table.columns[-1].header[0][0] == "CPU time"
        naps, burns = drawn_row(app, NAPS), drawn_row(app, BURNS)
        n = int(naps["calls"].replace(",", ""))
        # naps() computes nothing: a few ms of CPU at most, whatever its calls
        for column in ("self", "total"):
            assert ns_of(naps[column]) <= 0.05 * n * NAP_NS, (column, naps)
        assert ns_of(naps["per_call"]) <= 0.05 * NAP_NS, naps
        snap_wall = app.snap.profile.wall_ns if app.snap else 0
        assert float(naps["share"]) <= 100 * 0.05 * n * NAP_NS / snap_wall, (naps, snap_wall)
        assert {style for _, style in naps["bar"]} <= {"red"}, naps
        assert sum(cells for cells, _ in naps["bar"]) <= 1, naps
        assert {style for _, style in burns["bar"]} <= {"red"}, burns
        # every time column draws the row's CPU figures (how right those are is tested with the split)
        for k, shown in ((NAPS, naps), (BURNS, burns)):
            r = row(app, k)
            assert r is not None
            f = r.stats
            assert (shown["self"], shown["total"], shown["per_call"]) == (
                fmt_ns(f.self_cpu_ns), fmt_ns(f.cpu_ns), fmt_ns(f.cpu_ns / f.calls)), (shown, f)
            assert shown["share"] == f"{100 * f.self_cpu_ns / max(snap_wall, 1):.1f}", (shown, f)
        for number in (4, 5, 6, 7):  # sort by self, total, per call, %
            await pilot.press(str(number))
            if COLUMN_INDEX["self"] + 1 == number:
                await pilot.press(str(number))  # self was already the sort: back to most first
            assert app.descending and app.shown.index(BURNS) < app.shown.index(NAPS), (number, app.shown)
        assert "sort cpu% ▼" in header(app)

        # The callers pane: per-edge CPU time is not kept, so it shows wall time and says so.
        table.move_to(row_id(NAPS))
        await pilot.press("enter")
        callers = app.query_one("#callers", Grid)
        assert callers.keys == [row_id(CLOCK_MAIN)]
        assert header_labels(callers)[2:] == ["wall time", "% wall"]
        assert "wall time" in str(app.query_one("#links-title", Static).render())
        from_main = "".join(text for text, _ in callers.rows[0][2])
        assert ns_of(from_main) >= 0.95 * (n - 1) * NAP_NS, from_main

        await pilot.press("escape", "w")
        assert "clock wall" in header(app) and header_labels(table)[3] == "self"
        assert ns_of(drawn_row(app, NAPS)["self"]) >= 0.95 * (n - 1) * NAP_NS

    with live_run(CLOCK_PROGRAM) as (live, _):
        drive(body, live, ViewSettings(title="live_clock.py", refresh_seconds=None))


def test_clear_after_the_program_ended_keeps_the_history_and_never_shows_a_negative_time() -> None:
    async def body(app: LiveView, pilot: LivePilot) -> None:
        await until(app, pilot, live.done.is_set, "the program to end")
        await asyncio.sleep(0.3)  # the view lingers after the end
        app.refresh_now()  # the final profile: what the program did, all of it
        await pilot.pause()
        before = {r.key: r.stats.calls for r in app.rows}
        assert sum(before.values()) > 0
        await pilot.press("c")
        app.refresh_now()
        await pilot.pause()
        assert "since clear" not in header(app), header(app)
        assert {r.key: r.stats.calls for r in app.rows} == before
        assert app.snap is not None and app.snap.profile.wall_ns > 0
        assert live.run.covered_ns() > 0  # what the report after q covers

    with live_run(SHORT_PROGRAM, ()) as (live, _):
        drive(body, live)


def fid_of(app: LiveView, k: FuncKey) -> int:
    r = row(app, k)
    assert r is not None and r.stats.fid, k
    return r.stats.fid


def cells_text(app: LiveView, k: FuncKey) -> str:
    table = app.query_one("#functions", Grid)
    cells = table.rows[table.keys.index(row_id(k))]
    return " | ".join("".join(text for text, _style in cell) for cell in cells)


def test_x_switches_the_selected_function_off_and_on_and_its_counts_stop_and_resume() -> None:
    async def body(app: LiveView, pilot: LivePilot) -> None:
        await until(app, pilot, lambda: calls(app, COLD) >= 100, "100 calls of cold()")
        control = live.control
        cold = fid_of(app, COLD)
        app.query_one("#functions", Grid).move_to(row_id(COLD))
        await pilot.press("x")
        assert cold in control.functions  # asked: the row says "off…" until the agent took it
        await until(app, pilot, lambda: control.is_off(cold), "the agent to switch cold() off")
        (cmd,) = control.done
        assert cmd.status == "applied" and cmd.done_ns is not None
        assert cmd.done_ns - cmd.posted_ns < 100_000_000  # took effect within 100 ms
        # the counts stop: spin() goes on calling cold() 50 times a round, none counted
        await until(app, pilot, lambda: calls(app, SPIN) >= 2, "a round of spin()")
        frozen, rounds = calls(app, COLD), calls(app, SPIN)
        await until(app, pilot, lambda: calls(app, SPIN) >= rounds + 3, "three more rounds")
        assert calls(app, COLD) == frozen < 50 * calls(app, SPIN)
        assert "off " in cells_text(app, COLD)
        assert "*" in cells_text(app, SPIN)  # its self time holds cold()'s, unmeasured: marked
        await pilot.press("x")  # the cursor is still on cold(): on again
        await until(app, pilot, lambda: not control.is_off(cold), "the agent to switch cold() on")
        await until(app, pilot, lambda: calls(app, COLD) >= frozen + 100, "cold() to be counted again")
        assert "was off" in cells_text(app, COLD)

    with live_run() as (live, _):
        drive(body, live)


def test_x_after_a_filter_switches_every_function_shown_and_shift_x_the_whole_module() -> None:
    async def body(app: LiveView, pilot: LivePilot) -> None:
        await until(app, pilot, lambda: calls(app, SPIN) >= 1 and calls(app, HOT) >= 1, "a round")
        control = live.control
        await pilot.press("slash", *"live_target.py:2", "enter")  # cold() and spin(), lines 2x
        shown = set(app.shown)
        assert shown == {COLD, SPIN}, shown
        await pilot.press("x")
        wanted = {fid_of(app, k) for k in shown}
        await until(app, pilot, lambda: all(control.is_off(f) for f in wanted), "all shown off")
        assert not control.is_off(fid_of(app, HOT))
        await pilot.press("escape")
        app.query_one("#functions", Grid).move_to(row_id(HOT))
        await pilot.press("X")  # the module: some are off, so all go off
        module = {fid_of(app, r.key) for r in app.rows if r.key[1] == str(PROGRAM)}
        await until(app, pilot, lambda: all(control.is_off(f) for f in module), "the module off")
        await pilot.press("X")  # all off: all on again
        await until(app, pilot, lambda: not any(control.is_off(f) for f in module), "the module on")

    with live_run() as (live, _):
        drive(body, live)


PHASES = PROGRAMS_DIR / "module_phases.py"


def test_a_module_switched_off_with_shift_x_stays_off_for_functions_it_calls_later(tmp_path: Path) -> None:
    go, stop = tmp_path / "go", tmp_path / "stop"
    early, later = (("early", str(PHASES), 12), ("later", str(PHASES), 16))
    frozen = 0

    async def body(app: LiveView, pilot: LivePilot) -> None:
        nonlocal frozen
        await until(app, pilot, lambda: calls(app, early) >= 100, "100 calls of early()")
        control = live.control
        app.query_one("#functions", Grid).move_to(row_id(early))
        await pilot.press("X")
        module = {fid_of(app, r.key) for r in app.rows if r.key[1] == str(PHASES)}
        await until(app, pilot, lambda: all(control.is_off(f) for f in module), "the module off")
        go.touch()  # later() starts: the monitor learns of it now
        await until(app, pilot, lambda: row(app, later) is not None, "later() to show up")
        fid = fid_of(app, later)
        await until(app, pilot, lambda: control.is_off(fid), "later() to be switched off")
        frozen = calls(app, later)
        time.sleep(0.3)  # the program calls later() some 30 000 times meanwhile
        await until(app, pilot, lambda: True, "a snapshot")
        assert calls(app, later) == frozen
        assert "off " in cells_text(app, later)
        stop.touch()
        await until(app, pilot, lambda: live.done.is_set(), "the program's end")

    with live_run(PHASES, (str(go), str(stop))) as (live, captured):
        app = drive(body, live)
        made = int(captured.stdout._read(0, 100).decode().split("later=")[1])
        assert calls(app, later) == frozen < made - 1000


def test_d_opens_the_dial_and_a_budget_typed_there_switches_the_hot_function_off() -> None:
    async def body(app: LiveView, pilot: LivePilot) -> None:
        await until(app, pilot, lambda: calls(app, COLD) >= 100, "100 calls of cold()")
        assert live.session.dial is None  # started without --budget
        await pilot.press("d", *"abc", "enter")  # not a budget: refused, nothing changes
        assert live.session.dial is None
        # hot() takes nearly all the time: spin()'s 50 calls of cold() a round cost some 0.03 %
        await pilot.press("d", *"0.01", "enter")
        dial = live.session.dial
        assert dial is not None and dial.state.budget == 0.01
        app.refresh_now()
        assert "dial 0.01%" in header(app)
        # the dial judges the overhead and switches off what costs most for what it shows
        await until(app, pilot, lambda: any(sw.calls is not None for sw in dial.state.switches),
                    "the dial to switch a function off")
        assert "cold" in {sw.name for sw in dial.state.switches}
        assert live.control.done[0].off and live.control.done[0].status == "applied"
        await pilot.press("d", *["backspace"] * 4, "0", "enter")  # off: what it switched off comes back
        assert dial.state.budget == 0
        await until(app, pilot, lambda: not any(live.control.is_off(sw.fid) for sw in dial.state.switches),
                    "the functions to be switched on again")
        app.refresh_now()
        assert "dial off" in header(app)

    with live_run() as (live, _):
        drive(body, live)


def test_shift_i_sets_how_often_the_cpu_clock_is_read_and_the_agent_takes_it() -> None:
    async def body(app: LiveView, pilot: LivePilot) -> None:
        await until(app, pilot, lambda: calls(app, COLD) >= 100, "100 calls of cold()")
        await pilot.press("I", *"0", "enter")  # out of range: refused here, nothing posted
        assert live.control.done == [] and not live.control.pending()
        await pilot.press("I", *"2500", "enter")
        await until(app, pilot, lambda: live.control.intervals != [], "the agent to take the interval")
        assert [us for _, us in live.control.intervals] == [2500]
        assert live.session.agent_info()["cpu_interval_us"] == 2500

    with live_run() as (live, _):
        drive(body, live)


# -- single-step ---------------------------------------------------------------

STEPPED = Path(__file__).resolve().parents[1] / "programs" / "stepped.py"


def profiled_order(args: tuple[str, ...], stdin: str) -> list[tuple[str, str]]:
    """Ground truth: the program's calls and returns of its own functions, in
    order, as sys.setprofile sees them in a plain run of its own."""
    tracer = (
        "import runpy, sys\n"
        "path = sys.argv[1]\n"
        "seen = []\n"
        "def hook(frame, event, arg):\n"
        "    if event in ('call', 'return') and frame.f_code.co_filename == path:\n"
        "        seen.append((event, frame.f_code.co_name))\n"
        "sys.argv = sys.argv[1:]\n"
        "sys.setprofile(hook)\n"
        "runpy.run_path(path, run_name='__main__')\n"
        "sys.setprofile(None)\n"
        "print(repr(seen))\n")
    out = subprocess.run([sys.executable, "-c", tracer, str(STEPPED), *args], input=stdin, text=True,
                         capture_output=True, check=True, timeout=DEADLINE).stdout
    return list(ast.literal_eval(out.splitlines()[-1]))


@contextmanager
def stepped_run(*args: str) -> Iterator[tuple[LiveRun, Captured]]:
    captured = Captured()
    run = Run(Target("script", str(STEPPED), args), Options(engine=resolve_engine("auto")),
              stdin=subprocess.PIPE, stdout=captured.stdout.file, stderr=captured.stderr.file)
    live = LiveRun(run).start()
    try:
        yield live, captured
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
        live.done.wait(DEADLINE)
        run.finish()
        captured.close()


async def step_until(app: LiveView, pilot: LivePilot, ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not ready():
        app.refresh_step()
        await pilot.pause(0.01)
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; shown: {app.step_events}")


def in_module(live: LiveRun) -> bool:
    """The program's <module> started (the monitor knows its name)."""
    return any(s.file == str(STEPPED) and s.name == "<module>" for s in live.symbols().values())


def go(live: LiveRun) -> None:
    """The program's line on stdin: it starts its work."""
    stdin = live.run.proc.stdin
    assert stdin is not None
    stdin.write(b"go\n")
    stdin.close()


def test_n_single_steps_fib_and_the_events_shown_are_the_programs_call_order() -> None:
    truth = profiled_order(("wait",), "go\n")
    # <module>, main and fib's 5 calls: a call and a return each
    assert truth[:3] == [("call", "<module>"), ("call", "main"), ("call", "fib")] and len(truth) == 14
    truth = truth[1:]  # <module> started before the line arrived
    texts: list[str] = []  # the step pane at each stop
    with stepped_run("wait") as (live, captured):
        async def body(app: LiveView, pilot: LivePilot) -> None:
            await step_until(app, pilot, lambda: in_module(live), "the program to wait for its line")
            await pilot.press("s")
            assert app.stepping
            go(live)
            await step_until(app, pilot, lambda: len(app.step_events) == 1, "the first stop")
            while not live.done.is_set() and len(app.step_events) < 60:
                texts.append(app.step_text.plain)
                await pilot.press("n")
                await step_until(app, pilot, lambda: len(app.step_events) > len(texts) or live.done.is_set(),
                                 "the next stop")
            assert live.done.is_set()
        app = drive(body, live)
        # (the program's stdin decoder is stepped through too: sys.setprofile saw it in another file)
        shown = [(kind, name) for kind, name, file in app.step_events if file == str(STEPPED)]
        assert shown == truth
        # the deepest call: the event, the function and the thread's whole stack, innermost first
        stacks = [[line.split()[-2] for line in t.splitlines()[2:]] for t in texts if "call fib " in t]
        assert max(stacks, key=len) == ["fib", "fib", "fib", "main", "<module>"]
        assert live.run.returncode == 0
        assert captured.stdout._read(0, 100).decode().strip() == "2"


def test_a_shows_the_asyncio_tasks_with_where_each_waits_and_a_closes_them() -> None:
    """tests/programs/asyncio_tasks.py holds `held` in Event.wait for a while: the tasks pane
    (key a) lists it waiting there, by name, while the program runs; a again closes the pane."""
    program = PROGRAMS_DIR / "asyncio_tasks.py"

    def cells(grid: Grid) -> dict[str, list[str]]:
        return {"".join(t for t, _ in row[0]): ["".join(t for t, _ in c) for c in row[1:]]
                for row in grid.rows}

    async def body(app: LiveView, pilot: LivePilot) -> None:
        pane = app.query_one("#tasks")
        assert not pane.has_class("open")
        await pilot.press("a")
        assert pane.has_class("open")
        grid = app.query_one("#task-rows", Grid)
        await until(app, pilot, lambda: "held" in cells(grid), "the held task")
        held = cells(grid)["held"]
        assert held[0] == "waiting in Event.wait", held
        title = str(app.query_one("#tasks-title", Static).render())
        assert "not finished" in title, title
        going = sum(state[0].startswith(("waiting", "running")) for state in cells(grid).values())
        assert f"tasks {going} going" in header(app), (header(app), cells(grid))
        await pilot.press("a")
        assert not pane.has_class("open")

    with live_run(program, ("--hold", "30")) as (live, _):
        drive(body, live, ViewSettings(title="asyncio_tasks.py", refresh_seconds=None))


def test_o_shows_the_types_by_objects_live_and_with_a_function_selected_what_it_made() -> None:
    """tests/programs/objects_live.py keeps every Thing `grow` makes and none of the Bits `churn`
    makes: the pane (key o) lists Thing with its live objects growing (and, where the allocator
    tells sizes, their bytes), Bits made and destroyed at the same rate; with grow selected, the
    Things it made, all live."""
    program = PROGRAMS_DIR / "objects_live.py"
    grow = ("grow", str(program), next(i for i, text in enumerate(program.read_text().splitlines(), 1)
                                       if text.startswith("def grow(")))

    def cells(grid: Grid) -> dict[str, list[str]]:
        return {"".join(t for t, _ in row[0]): ["".join(t for t, _ in c) for c in row[1:]]
                for row in grid.rows}

    def number(text: str) -> int:
        return int(text.replace(",", ""))

    async def body(app: LiveView, pilot: LivePilot) -> None:
        pane = app.query_one("#objects")
        await pilot.press("o")
        assert pane.has_class("open")
        grid = app.query_one("#object-rows", Grid)
        await until(app, pilot, lambda: "Thing" in cells(grid) and number(cells(grid)["Thing"][0]) >= 200,
                    "200 Things live")
        first = number(cells(grid)["Thing"][0])
        await until(app, pilot, lambda: number(cells(grid)["Thing"][0]) > first, "more Things live")
        bits = cells(grid)["Bit"]
        # (live, [bytes live,] made/s, destroyed/s, made)
        assert number(bits[0]) < 20 and number(bits[-1]) >= 200, bits
        if sys.version_info < (3, 13):  # the allocator's size classes: bytes of the Things live
            things = cells(grid)["Thing"]
            assert len(things) == 5 and things[1].endswith(("B", "KiB", "MiB")), things
        else:
            assert len(cells(grid)["Thing"]) == 4, cells(grid)
        title = str(app.query_one("#objects-title", Static).render())
        assert any(c in title for c in "▁▂▃▄▅▆▇█"), title  # the sparkline of objects live
        if sys.version_info < (3, 13):  # the mechanism labelled, with what it cannot see
            assert "allocator's blocks: free-listed" in title, title
        app.query_one("#functions", Grid).move_to(row_id(grow))
        await pilot.press("enter")
        await until(app, pilot, lambda: "Thing" in cells(grid) and "made by grow" in
                    str(app.query_one("#objects-title", Static).render()), "grow's objects")
        live, made, destroyed, _here = (number(x) for x in cells(grid)["Thing"])
        assert live == made > 0 and destroyed == 0, cells(grid)
        await pilot.press("o")
        assert not pane.has_class("open")

    options = Options(engine=resolve_engine("auto"), objects=())
    with live_run(program, ("60",), options) as (live, _):
        drive(body, live, ViewSettings(title="objects_live.py", refresh_seconds=None))
