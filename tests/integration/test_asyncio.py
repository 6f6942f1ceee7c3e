"""asyncio under ulma run, read as a user reads it (the JSON report, the
text report), against what the programs measured or counted themselves: a
coroutine suspended in await waits for that time, the CPU goes to the
coroutine that computed, the event loop's idle wait is told apart from work,
and a callback that holds the loop is flagged with its stack."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing_dependency, run_process, ulma_command
from tests.integration.test_split_under_load import cpu_hogs  # noqa: F401 (a fixture)
from ulma.format import records
from ulma.format import trace as trace_format

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
MS = 1_000_000

Completed = subprocess.CompletedProcess[str]
UlmaJson = Callable[..., tuple[Completed, dict[str, Any]]]
FunctionNamed = Callable[[Mapping[str, Any], Path, str], tuple[int, dict[str, Any]]]


def run_json(ulma_json: UlmaJson, describe: Callable[[Completed], str], program: str,
             *flags: str) -> tuple[dict[str, Any], dict[str, Any]]:
    result, report = ulma_json([*flags, "--no-report", str(PROGRAMS_DIR / program)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    assert report["dropped"] == 0 and report["cpu_readings"] is True, report["dropped"]
    facts: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report, facts


def test_sleeping_coroutines_wait_for_their_awaits_and_the_cpu_goes_to_the_one_computing(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str],
    function_named: FunctionNamed, cpu_hogs: int,  # noqa: F811
) -> None:
    """On a busy machine (CPU hogs).  Each sleeper measured the wall time
    around its await: that window holds its time suspended and a few of its
    own steps (asyncio.sleep making its future), so ulma's await time is at
    most the window and its total at least the window (1 ms and 1 % for the
    two clocks), and the suspension is most of it (90 %: the steps are
    microseconds of CPU, preempted now and then by the hogs).  The compute
    coroutine's CPU is the CPU time its thread measured (within 10 %); a
    coroutine awaiting another (outer -> inner) has the time in its total but
    not in its self time, which goes to the awaited one."""
    program = PROGRAMS_DIR / "asyncio_waits.py"
    report, facts = run_json(ulma_json, describe, "asyncio_waits.py", *engine_flags)

    def within_window(fn: dict[str, Any], window: int) -> None:
        slack = 1 * MS + 0.01 * window
        assert fn["await_ns"] <= window + slack and fn["total_ns"] >= window - slack, (fn, window)
        assert fn["await_ns"] >= 0.9 * window, (fn, window)

    _, sleeper = function_named(report, program, "sleeper")
    assert sleeper["calls"] == 2 and sleeper["resumes"] == 2, sleeper
    within_window(sleeper, sum(facts["awaited_ns"]["sleeper"]))
    assert sleeper["wait_ns"] >= sleeper["await_ns"], sleeper
    # it awaited asyncio.sleep, a coroutine: that is where its waiting is, not in its own self time
    assert sleeper["self_await_ns"] <= 1 * MS, sleeper
    _, inner = function_named(report, program, "inner")
    _, outer = function_named(report, program, "outer")
    (inner_awaited,) = facts["awaited_ns"]["inner"]
    within_window(inner, inner_awaited)
    within_window(outer, inner_awaited)  # its await holds inner's, its frames hold inner's
    assert outer["await_ns"] <= inner["await_ns"] and outer["self_await_ns"] <= 1 * MS, (outer, inner)
    assert outer["total_ns"] >= inner["total_ns"], (outer, inner)
    _, computes = function_named(report, program, "computes")
    truth = facts["computed_cpu_ns"]
    assert abs(computes["cpu_ns"] - truth) <= 0.10 * truth, (computes, truth)
    # the hogs took the CPU from it now and then: runnable, never "awaiting" (it only awaited sleep(0))
    assert computes["self_await_ns"] <= 0.05 * computes["total_ns"], computes


def test_an_async_generator_waits_in_its_awaits_and_not_at_its_yields(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str],
    function_named: FunctionNamed,
) -> None:
    """`ticks` awaits asyncio.sleep before each value: that time, which it measured, is its waiting
    (in its total; in its self time not, as it awaited a coroutine).  `values` sat at `yield`
    while its consumer slept, as long: that is no waiting of its, and not in its total either,
    as for any generator handing out a value.  `stuck`, cancelled in its await (a throw into it),
    waited until then, not on through the program's later sleep."""
    program = PROGRAMS_DIR / "asyncio_agen.py"
    report, facts = run_json(ulma_json, describe, "asyncio_agen.py", *engine_flags)
    _, ticks = function_named(report, program, "ticks")
    window = facts["awaited_ns"]
    slack = 1 * MS + 0.01 * window
    assert 0.9 * window <= ticks["await_ns"] <= window + slack, (ticks, window)
    assert ticks["total_ns"] >= window - slack and ticks["self_await_ns"] <= 1 * MS, (ticks, window)
    _, values = function_named(report, program, "values")
    assert values["await_ns"] == 0 and values["total_ns"] <= 0.1 * facts["handed_ns"], (values, facts)
    _, stuck = function_named(report, program, "stuck")
    window = facts["stuck_ns"]
    assert 0.9 * window <= stuck["await_ns"] <= window + 1 * MS + 0.01 * window, (stuck, window)


def test_an_asyncio_server_reports_its_handlers_first_and_the_idle_loop_apart(
    engine_flags: list[str], describe: Callable[[Completed], str], tmp_path: Path,
) -> None:
    """A real server and its clients on loopback: the handler coroutine ran
    once per connection (the server's own count), it is a task whose waiting
    is its awaiting; the selector's select is marked idle, left out of the
    report's table (which leads with what the handlers awaited), and its time
    is the report's "event loop idle" line."""
    out = tmp_path / "server.json"
    result = run_process(ulma_command(["run", *engine_flags, "--json", str(out), "--limit", "8",
                                       str(PROGRAMS_DIR / "asyncio_server.py")]), cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    served = json.loads(result.stdout.strip().splitlines()[-1])
    report = json.loads(out.read_text())
    assert served == {"connections": 8, "lines": 160}
    (handler,) = [f for f in report["functions"] if f["name"] == "handle_client"]
    assert handler["calls"] == served["connections"], handler
    assert handler["await_ns"] > 0 and handler["await_ns"] <= handler["wait_ns"], handler
    idle = [f for f in report["functions"] if f["idle"]]
    assert idle and all(f["name"].endswith("Selector.select") for f in idle), idle
    assert report["asyncio"]["loop_idle_ns"] == sum(f["total_ns"] for f in idle) > 0
    tasks = {t["name"]: t for t in report["asyncio"]["tasks"]}
    assert tasks["handle_client"]["tasks"] == 8 and tasks["client"]["tasks"] == 8, tasks
    assert tasks["handle_client"]["awaiting_ns"] == handler["await_ns"], tasks
    # what the user reads: no selector in the table (it leads with what the handlers awaited:
    # StreamReader._wait_for_data), the idle line and the tasks under it
    table = result.stderr.split("bar:")[0]
    assert "_wait_for_data" in table and "Selector.select" not in table, result.stderr
    assert "event loop idle" in result.stderr and "handle_client x8" in result.stderr, result.stderr


def test_a_callback_or_step_that_holds_the_loop_past_the_limit_is_flagged_with_its_stack(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    """Exactly the two that block (a coroutine calling a 120 ms blocking
    function, a plain callback of 80 ms), each with its stack from the loop's
    Handle._run to the blocking function; the 10 ms step is not flagged."""
    report, facts = run_json(ulma_json, describe, "asyncio_blocking.py", *engine_flags)
    blocked = report["asyncio"]["blocked"]
    assert report["asyncio"]["block_ns"] == 50 * MS and report["asyncio"]["blocked_more"] == 0
    assert [b["stack"][-1]["name"] for b in blocked] == facts["blocked"], blocked
    assert all(b["stack"][0]["name"] == "Handle._run" for b in blocked), blocked
    assert [b["stack"][-2]["name"] for b in blocked] == ["stalls", "Handle._run"], blocked
    assert 120 * MS <= blocked[0]["ns"] <= 400 * MS and 80 * MS <= blocked[1]["ns"] <= 400 * MS, blocked
    assert blocked[0]["start_ns"] < blocked[1]["start_ns"], blocked
    # and none with the limit off
    off, _ = run_json(ulma_json, describe, "asyncio_blocking.py", *engine_flags, "--loop-block", "0")
    assert off["asyncio"]["blocked"] == [] and off["asyncio"]["block_ns"] == 0


def test_a_trace_reports_the_same_awaits_and_blocks_as_the_run(
    engine_flags: list[str], describe: Callable[[Completed], str], tmp_path: Path,
) -> None:
    """One replay for live and offline: `ulma report` of the run's trace has
    the same await times (to the nanosecond but for the calibration, 1 %)
    and the same blocked steps."""
    trace, live_json, offline_json = tmp_path / "run.ulma", tmp_path / "live.json", tmp_path / "offline.json"
    result = run_process(ulma_command(["run", *engine_flags, "--no-report", "--json", str(live_json),
                                       "-o", str(trace), str(PROGRAMS_DIR / "asyncio_blocking.py")]),
                         cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    result = run_process(ulma_command(["report", "--json", str(offline_json), str(trace)]), cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    live, offline = json.loads(live_json.read_text()), json.loads(offline_json.read_text())

    def awaits(report: dict[str, Any]) -> dict[str, int]:
        return {f["name"]: f["await_ns"] for f in report["functions"] if f["await_ns"]}

    a, b = awaits(live), awaits(offline)
    assert a.keys() == b.keys() and "stalls" in a, (a, b)
    assert all(abs(a[k] - b[k]) <= 0.01 * a[k] for k in a), (a, b)
    def stacks(report: dict[str, Any]) -> list[list[str]]:
        return [[s["name"] for s in blk["stack"]] for blk in report["asyncio"]["blocked"]]

    assert stacks(live) == stacks(offline) and len(stacks(live)) == 2, (live, offline)


def test_a_trace_keeps_the_runs_loop_block_limit_and_a_report_may_judge_by_another(
    engine_flags: list[str], describe: Callable[[Completed], str], tmp_path: Path,
) -> None:
    """`ulma record --loop-block 100`: the 120 ms step is flagged, the 80 ms callback is not, live
    and in `ulma report` of the trace alike (which reads the limit from the trace); `ulma report
    --loop-block 60` replays the same trace with another limit and finds both."""
    trace, live_json = tmp_path / "run.ulma", tmp_path / "live.json"
    result = run_process(ulma_command(["record", *engine_flags, "--loop-block", "100",
                                       "--json", str(live_json), "-o", str(trace),
                                       str(PROGRAMS_DIR / "asyncio_blocking.py")]),
                         cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)

    def blocked(report: dict[str, Any]) -> tuple[int, list[str]]:
        return report["asyncio"]["block_ns"], [b["stack"][-1]["name"] for b in report["asyncio"]["blocked"]]

    def offline(*args: str) -> dict[str, Any]:
        out = tmp_path / f"offline{len(args)}.json"
        done = run_process(ulma_command(["report", *args, "--json", str(out), str(trace)]), cwd=PROGRAMS_DIR)
        assert done.returncode == 0, describe(done)
        report: dict[str, Any] = json.loads(out.read_text())
        return report

    once = (100 * MS, ["blocks_in_a_coroutine"])
    assert blocked(json.loads(live_json.read_text())) == once
    assert blocked(offline()) == once
    assert blocked(offline("--loop-block", "60")) == (60 * MS, ["blocks_in_a_coroutine", "blocking_callback"])


def test_a_blocked_loop_is_flagged_live_while_the_program_runs_on(
    engine_flags: list[str], describe: Callable[[Completed], str], tmp_path: Path,
) -> None:
    """The --jsonl lines written while the program still runs (not the final
    one) already carry the block, with its stack."""
    jsonl = tmp_path / "run.jsonl"
    result = run_process(ulma_command(["run", *engine_flags, "--no-report", "--jsonl", str(jsonl),
                                       str(PROGRAMS_DIR / "asyncio_block_live.py")]), cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    live = [ln for ln in lines if not ln["final"] and ln["asyncio"]["blocked"]]
    assert live, [ln["asyncio"] for ln in lines]
    (block,) = live[0]["asyncio"]["blocked"]
    assert [s["name"] for s in block["stack"]][-2:] == ["main", "holds_the_loop"], block
    assert 150 * MS <= block["ns"] <= 500 * MS, block


def tasks_by_name(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    listed = report["asyncio"]["task_list"]
    by_name = {t["name"]: t for t in listed}
    assert len(by_name) == len(listed), listed  # the program's names are unique
    return by_name


def check_tasks_against_the_program(tasks: Mapping[str, Mapping[str, Any]], facts: Mapping[str, Any]) -> None:
    """Every task the program named is there with its own coroutine, its steps (its awaits that
    suspended it, plus one), its waiting (the wall time it measured around its awaits: at most
    that; and most of the windows in which its thread was not preempted -- a window also holds
    the end of the step that suspends and the start of the one that resumes, which a busy machine
    may preempt for a time slice or more, and that is the task running) and its life (running and
    waiting together: from its first line to its last)."""
    coroutine = {"worker-fast": "worker", "worker-slow": "worker", "crunch": "crunch", "held": "held",
                 "fails": "fails"}
    (default,) = [name for name in facts if name not in coroutine]
    assert default.startswith("Task-"), facts
    coroutine[default] = "worker"
    for name, fact in facts.items():
        t = tasks[name]
        assert t["coroutine"] == coroutine[name], t
        assert t["state"] == ("failed" if name == "fails" else "done"), t
        assert t["steps"] == fact["awaits"] + 1, (t, fact)
        slack = 1 * MS + 0.02 * fact["life_ns"]
        assert 0.9 * fact["clean_ns"] - 1 * MS <= t["waiting_ns"] <= fact["awaited_ns"] + slack, (t, fact)
        span = t["running_ns"] + t["waiting_ns"]
        assert fact["life_ns"] - slack <= span <= fact["life_ns"] + slack, (t, fact)
        assert t["running_ns"] >= fact["life_ns"] - fact["awaited_ns"] - slack, (t, fact)
    # one coroutine function, two tasks, each with its own figures (the slow one slept 5 x 50 ms
    # more; crunch's computing stretched the fast one's sleeps)
    assert tasks["worker-slow"]["waiting_ns"] > tasks["worker-fast"]["waiting_ns"] + 100 * MS, tasks


def test_each_task_has_its_name_steps_and_time_running_and_waiting_as_it_measured_them(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str],
    cpu_hogs: int,  # noqa: F811
) -> None:
    """On a busy machine (CPU hogs).  Tasks told apart one by one, not by coroutine function:
    `worker-fast` and `worker-slow` run the same coroutine and each has what it measured itself;
    `crunch` computed (its time is running), `fails` raised (failed), one kept its default name;
    and the totals say every task the run had finished."""
    report, facts = run_json(ulma_json, describe, "asyncio_tasks.py", *engine_flags)
    tasks = tasks_by_name(report)
    check_tasks_against_the_program(tasks, facts)
    assert tasks["crunch"]["running_ns"] >= 6 * 20 * MS, tasks["crunch"]
    totals = report["asyncio"]["task_totals"]
    # the program's tasks, its main one, and asyncio.run's two shutdown tasks
    assert totals["seen"] == len(report["asyncio"]["task_list"]) == len(facts) + 3, totals
    assert (totals["done"], totals["failed"], totals["going"]) == (totals["seen"] - 1, 1, 0), totals
    assert totals["not_listed"] == totals["not_followed"] == totals["unnamed"] == 0, totals


def test_a_trace_reports_the_same_tasks_as_the_run(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str], tmp_path: Path,
) -> None:
    """One replay: `ulma report` of the run's trace lists the same tasks, with the same names,
    coroutines, states and steps, and the same times (within 1 %: the report uses the trace's
    final calibration)."""
    trace = tmp_path / "tasks.ulma"
    report, facts = run_json(ulma_json, describe, "asyncio_tasks.py", *engine_flags, "-o", str(trace))
    out = tmp_path / "from_trace.json"
    result = run_process(ulma_command(["report", str(trace), "--json", str(out)]))
    assert result.returncode == 0, describe(result)
    live, offline = tasks_by_name(report), tasks_by_name(json.loads(out.read_text()))
    assert live.keys() == offline.keys(), (live, offline)
    for name, t in live.items():
        o = offline[name]
        assert [t[k] for k in ("number", "coroutine", "state", "steps", "awaiting")] == \
            [o[k] for k in ("number", "coroutine", "state", "steps", "awaiting")], (t, o)
        for k in ("running_ns", "waiting_ns"):
            assert abs(t[k] - o[k]) <= 0.01 * t[k] + 1000, (k, t, o)
    check_tasks_against_the_program(offline, facts)


def test_a_task_suspended_now_shows_live_where_it_waits_and_for_how_long(
    engine_flags: list[str], describe: Callable[[Completed], str], tmp_path: Path,
) -> None:
    """While the program runs (--jsonl lines), `held` waits in Event.wait, its waiting growing
    from line to line; at the end it is done, having waited what it measured."""
    jsonl = tmp_path / "run.jsonl"
    result = run_process(ulma_command(["run", *engine_flags, "--no-report", "--jsonl", str(jsonl),
                                       str(PROGRAMS_DIR / "asyncio_tasks.py"), "--hold", "1.5"]),
                         cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    seen = [tasks_by_name(line)["held"] for line in lines if not line["final"]]
    waiting = [t for t in seen if t["state"] == "waiting"]
    assert len(waiting) >= 2, seen
    assert all(t["awaiting"][:1] == ["Event.wait"] for t in waiting), waiting
    assert all(a["waiting_ns"] < b["waiting_ns"] for a, b in itertools.pairwise(waiting)), waiting
    # each line's figure is the time so far: at most what the program measured in all
    assert waiting[-1]["waiting_ns"] <= facts["held"]["awaited_ns"] + 1 * MS, (waiting, facts)
    assert all(line["asyncio"]["task_totals"]["going"] >= 2 for line in lines[:len(seen)]
               if tasks_by_name(line)["held"]["state"] == "waiting"), lines  # held and main
    final = tasks_by_name(lines[-1])["held"]
    assert final["state"] == "done" and final["awaiting"] == [], final
    assert abs(final["waiting_ns"] - facts["held"]["awaited_ns"]) <= 1 * MS + 0.02 * facts["held"]["life_ns"]


def need_uvloop() -> None:
    """uvloop is a test dependency (pyproject.toml): missing, the test fails in CI, skips elsewhere."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        missing_dependency("uvloop (pip install uvloop, a test dependency) is not installed")


def test_tasks_on_uvloops_event_loop_are_told_apart_as_on_asyncios(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    """uvloop runs the loop (and each task's step) in C: the tasks are asyncio's own, found the
    same way, with what each measured (uvloop is a test dependency: pyproject.toml)."""
    need_uvloop()
    result, report = ulma_json([*engine_flags, "--no-report", str(PROGRAMS_DIR / "asyncio_tasks.py"),
                                "--uvloop"], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    assert report["dropped"] == 0, report["dropped"]
    check_tasks_against_the_program(tasks_by_name(report), json.loads(result.stdout.strip().splitlines()[-1]))


def test_on_uvloop_a_task_step_that_holds_the_loop_is_flagged_from_the_task_up(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    """uvloop's Handle._run is C: the coroutine's 120 ms step is flagged by the task's own step
    (its TASK record), its stack from the task's coroutine up to the blocking function; the 10 ms
    step is not.  (uvloop's plain callbacks have no Python frame to time: not flagged.)"""
    need_uvloop()
    result, report = ulma_json([*engine_flags, "--no-report", str(PROGRAMS_DIR / "asyncio_blocking.py"),
                                "--uvloop"], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    (blocked,) = report["asyncio"]["blocked"]
    assert [f["name"] for f in blocked["stack"]] == ["stalls", "blocks_in_a_coroutine"], blocked
    assert 120 * MS <= blocked["ns"] <= 400 * MS, blocked


def test_tasks_are_told_apart_with_native_calls_too(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    """--native-calls takes a coroutine's first step through another hook (its dispatch is
    measured there on sys.monitoring): the task is still found at that step, so every task
    has all its steps, a one-step task included."""
    report, facts = run_json(ulma_json, describe, "asyncio_tasks.py", *engine_flags, "--native-calls")
    tasks = tasks_by_name(report)
    check_tasks_against_the_program(tasks, facts)
    totals = report["asyncio"]["task_totals"]
    assert totals["seen"] == len(facts) + 3 and totals["done"] == totals["seen"] - 1, totals


def test_a_task_record_and_its_event_are_written_together_when_a_tiny_ring_drops(
    engine_flags: list[str], describe: Callable[[Completed], str], tmp_path: Path,
) -> None:
    """A ring of 256 records, overflowed again and again by thousands of short steps: a TASK
    record is never written without its event, so in the trace every TASK record is followed
    right away by a coroutine's event going the way it says (a step's start or end).  What the
    replay makes of what was kept never exceeds what the program did: no task has more steps
    than its awaits plus one, and every task listed is one the program made (or asyncio.run's)."""
    out, report_json = tmp_path / "run.ulma", tmp_path / "run.json"
    result = run_process(ulma_command(["record", *engine_flags, "--test-ring-size", "4K", "--json",
                                       str(report_json), "-o", str(out),
                                       str(PROGRAMS_DIR / "asyncio_many_steps.py")]), cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    awaits: dict[str, int] = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(awaits) == 200 and set(awaits.values()) == {40}, awaits
    report = json.loads(report_json.read_text())
    assert report["dropped"] > 0, "a 4K ring dropped nothing"

    streams: dict[int, list[records.Event]] = {}
    for chunk in trace_format.TraceReader(str(out)).chunks():
        if chunk.kind == trace_format.EVENTS:
            streams.setdefault(chunk.thread, []).extend(records.decode(chunk.payload))
    entering = {records.CALL, records.RESUME, records.THROW}
    leaving = {records.YIELD, records.RETURN, records.UNWIND}
    notes = 0
    for events in streams.values():
        for e, after in itertools.pairwise(events):
            if e.kind != records.TASK:
                continue
            notes += 1
            assert after.flags & records.EVF_AWAIT, (e, after)
            assert after.kind in (leaving if e.flags & records.TASKF_END else entering), (e, after)
        assert not events or events[-1].kind != records.TASK, events[-1]
    assert notes >= 10, notes  # (how many the tiny ring lets through varies: 87-221 seen)

    for t in report["asyncio"]["task_list"]:
        if t["name"].startswith("hopper-"):
            assert t["coroutine"] == "hopper" and t["steps"] <= awaits[t["name"]] + 1, t
        else:
            assert t["coroutine"].rpartition(".")[2] in ("main", "shutdown_asyncgens",
                                                          "shutdown_default_executor"), t
    assert report["asyncio"]["task_totals"]["seen"] <= 203, report["asyncio"]["task_totals"]


def test_tasks_in_a_thread_python_did_not_make_are_followed_through_its_new_thread_states(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str], tmp_path: Path,
) -> None:
    """A C thread calls into Python three times (ctypes callbacks): each call has a new thread
    state, the last one freed and its memory overwritten in between (foreign_thread.c).  The
    agent keeps nothing of a freed thread state: each call's tasks are all there, with all
    their steps, and the program ends as it would."""
    if shutil.which("gcc") is None:
        missing_dependency("gcc (Debian package gcc) is not installed")
    helper = tmp_path / "foreign_thread.so"
    built = run_process(["gcc", "-shared", "-fPIC", "-O1", "-o", str(helper),
                         str(PROGRAMS_DIR / "foreign_thread.c"), "-lpthread"])
    assert built.returncode == 0, describe(built)
    result, report = ulma_json([*engine_flags, "--no-report", str(PROGRAMS_DIR / "asyncio_foreign_thread.py"),
                                str(helper)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    awaits: dict[str, int] = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(awaits) == 9, awaits
    tasks = tasks_by_name(report)
    assert {name: tasks[name]["steps"] for name in awaits if name in tasks} == \
        {name: n + 1 for name, n in awaits.items()}, report["asyncio"]["task_list"]
    assert all(tasks[name]["coroutine"] == "napper" and tasks[name]["state"] == "done" for name in awaits)


def test_tasks_past_the_agents_bound_are_counted_once_and_the_others_followed_whole(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    """The agent keeps at most so many live top-level coroutines (tasks.c TASK_MAP_MAX; 50 here,
    through the tests' ULMA_TEST_TASK_MAP_MAX): 200 tasks live at once do not fit.  Each task is
    either followed, with all its steps, or counted as not followed -- once, never both."""
    result, report = ulma_json([*engine_flags, "--no-report", str(PROGRAMS_DIR / "asyncio_many_steps.py")],
                               cwd=PROGRAMS_DIR, env={"ULMA_TEST_TASK_MAP_MAX": "50"})
    assert result.returncode == 0, describe(result)
    awaits: dict[str, int] = json.loads(result.stdout.strip().splitlines()[-1])
    totals = report["asyncio"]["task_totals"]
    assert 0 < totals["not_followed"] < 200 and totals["seen"] + totals["not_followed"] == 203, totals
    hoppers = [t for t in report["asyncio"]["task_list"] if t["name"].startswith("hopper-")]
    # main starts before the hoppers and asyncio.run's two shutdown tasks after them: room for those
    assert len(hoppers) == totals["seen"] - 3, (totals, len(hoppers))
    assert all(t["steps"] == awaits[t["name"]] + 1 and t["state"] == "done" for t in hoppers), hoppers


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks came in Python 3.12")
def test_an_eager_tasks_first_step_inside_create_task_is_its_own(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    """With asyncio.eager_task_factory a task's first step runs inside create_task(), called from
    its creator's coroutine (which is at a call, not an await): that step is the task's, so a task
    that finishes there is seen, with its one step, and one that goes on has all its steps.  (A
    task goes by the name it had at its first step: asyncio names an eager one after that step.)"""
    report, awaits = run_json(ulma_json, describe, "asyncio_eager.py", *engine_flags)
    tasks = tasks_by_name(report)
    assert len(awaits) == 3, awaits
    assert {name: (tasks[name]["steps"], tasks[name]["state"]) for name in awaits if name in tasks} == \
        {name: (n + 1, "done") for name, n in awaits.items()}, report["asyncio"]["task_list"]
    assert sorted(tasks[name]["coroutine"] for name in awaits) == ["napper", "napper", "quick"]
