"""Many threads: every thread is traced (rings of finished threads are reused, more rings are mapped as
threads need them), the agent holds no descriptor per thread, and whatever goes untraced anyway is
counted in the report and the JSON."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AgentTarget, agent_target

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
SEQUENTIAL = PROGRAMS_DIR / "many_sequential_threads.py"
LIVE = PROGRAMS_DIR / "many_live_threads.py"
FEW_FDS = PROGRAMS_DIR / "many_threads_few_fds.py"
SCRIBBLES = PROGRAMS_DIR / "scribbles_on_session.py"
LONG_NAMES = PROGRAMS_DIR / "long_symbol_names.py"
ATTACH_TARGET = PROGRAMS_DIR / "attach_threads_target.py"
GIVEN_BACK = PROGRAMS_DIR / "rings_given_back.py"

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]
UlmaJson = Callable[..., tuple[Completed, dict[str, Any]]]
FunctionNamed = Callable[[Mapping[str, Any], Path, str], tuple[int, dict[str, Any]]]


def worker_calls(report: Mapping[str, Any], program: Path, function_named: FunctionNamed) -> int:
    _index, fn = function_named(report, program, "worker")
    calls: int = fn["calls"]
    return calls


def assert_nothing_lost(report: Mapping[str, Any]) -> None:
    assert (report["untraced_threads"], report["untraced_events"], report["dropped"]) == (0, 0, 0)


def test_each_of_3000_threads_run_one_after_another_is_traced(
    engine_flags: list[str], ulma_json: UlmaJson, run_python: RunFn, function_named: FunctionNamed,
    describe: Callable[[Completed], str],
) -> None:
    result, report = ulma_json([*engine_flags, "--no-report", str(SEQUENTIAL), "3000"], cwd=PROGRAMS_DIR)
    plain = run_python([str(SEQUENTIAL), "3000"], cwd=PROGRAMS_DIR)
    assert (result.returncode, result.stdout) == (plain.returncode, plain.stdout), describe(result)
    assert worker_calls(report, SEQUENTIAL, function_named) == 3000
    assert report["threads"] == 3001  # and the main thread
    assert_nothing_lost(report)


def test_700_threads_alive_at_once_are_all_traced(
    engine_flags: list[str], ulma_json: UlmaJson, function_named: FunctionNamed,
    describe: Callable[[Completed], str],
) -> None:
    result, report = ulma_json([*engine_flags, "--no-report", str(LIVE), "700", "5"], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    assert result.stdout == "worker ran 3500 times in 700 threads\n", describe(result)
    assert worker_calls(report, LIVE, function_named) == 3500
    assert report["threads"] == 701
    assert_nothing_lost(report)


def test_300_threads_leave_the_program_its_descriptors_at_a_limit_of_1024(
    engine_flags: list[str], ulma_json: UlmaJson, run_python: RunFn, function_named: FunctionNamed,
    describe: Callable[[Completed], str],
) -> None:
    plain = run_python([str(FEW_FDS)], cwd=PROGRAMS_DIR)
    assert plain.returncode == 0 and plain.stdout.startswith("opened 900 files"), plain.stdout
    result, report = ulma_json([*engine_flags, "--no-report", str(FEW_FDS)], cwd=PROGRAMS_DIR)
    assert (result.returncode, result.stdout) == (plain.returncode, plain.stdout), describe(result)
    assert worker_calls(report, FEW_FDS, function_named) == 300
    assert_nothing_lost(report)


def test_threads_beyond_max_threads_are_counted_untraced_with_their_events(
    engine_flags: list[str], ulma_json: UlmaJson, function_named: FunctionNamed,
    counts_next_to: Callable[[str, str], list[int]], describe: Callable[[Completed], str],
) -> None:
    # 4 rings: the main thread and 3 of the 10 threads (all alive at once) get one
    result, report = ulma_json([*engine_flags, "--max-threads", "4", str(LIVE), "10", "5"], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    assert result.stdout.startswith("worker ran 50 times in 10 threads\n"), describe(result)
    assert report["untraced_threads"] == 7
    assert report["threads"] == 4
    assert worker_calls(report, LIVE, function_named) == 5 * 3
    # each untraced thread entered and left worker 5 times at least: events the agent counted
    assert report["untraced_events"] >= 7 * 5 * 2
    assert counts_next_to(result.stderr, "untraced threads") == [7], describe(result)


def test_the_memory_of_finished_threads_rings_is_given_back(
    engine_flags: list[str], run_ulma: RunFn, describe: Callable[[Completed], str],
) -> None:
    result = run_ulma(["run", *engine_flags, "--no-report", "--ring-size", "1M", str(GIVEN_BACK)],
                      cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    match = re.fullmatch(r"while the threads lived: (\d+) KiB, after: (\d+) KiB\n", result.stdout)
    assert match, describe(result)
    alive, after = int(match[1]), int(match[2])
    assert alive >= 40 * 1024  # 40 full rings of 1 MiB
    assert after <= 4096, describe(result)  # a few pages of the header and symbol table


def test_symbol_definitions_that_do_not_fit_are_counted(
    ulma_json: UlmaJson, counts_next_to: Callable[[str, str], list[int]],
    describe: Callable[[Completed], str],
) -> None:
    result, report = ulma_json([str(LONG_NAMES), "10000"], cwd=PROGRAMS_DIR, timeout=300)
    assert result.returncode == 0 and result.stdout == "called 10000 functions\n", describe(result)
    named = sum(1 for f in report["functions"] if f["name"].startswith("f_"))
    assert named < 10000  # 10000 names of 2 KB do not fit 16 MiB
    assert report["symbols_lost"] >= 10000 - named
    assert counts_next_to(result.stderr, "symbols lost") == [report["symbols_lost"]], describe(result)


def test_the_monitor_reads_the_session_as_it_made_it_whatever_the_program_writes_or_truncates(
    engine_flags: list[str], ulma_json: UlmaJson, function_named: FunctionNamed,
    describe: Callable[[Completed], str],
) -> None:
    result, report = ulma_json([*engine_flags, "--no-report", str(SCRIBBLES)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0 and result.stdout == "worker ran 4000 times\n", describe(result)
    assert worker_calls(report, SCRIBBLES, function_named) == 4000
    assert_nothing_lost(report)


@pytest.fixture
def attach_target(tmp_path: Path) -> Iterator[AgentTarget]:
    with agent_target(ATTACH_TARGET, tmp_path) as t:
        yield t


def test_an_attachment_leaves_no_descriptor_open_in_the_program(
    attach_target: AgentTarget, run_ulma: RunFn, tmp_path: Path,
) -> None:
    before = attach_target.descriptors()
    out = tmp_path / "attach.json"
    result = run_ulma(["attach", str(attach_target.proc.pid), "--duration", "0.5", "--no-report",
                       "--json", str(out)])
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    ticks = sum(f["calls"] for f in report["functions"] if f["name"] == "tick")
    assert ticks > 0 and report["threads"] >= 20  # every thread was traced, after a wait
    assert report["cpu_readings"] is True
    # the listener closes the monitor's connection just after it answered the detach
    deadline = time.monotonic() + 10
    while attach_target.descriptors() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert attach_target.descriptors() == before
    attach_target.stop.touch()
    _out, err = attach_target.proc.communicate(timeout=60)
    assert attach_target.proc.returncode == 3 and "Traceback" not in err


def test_an_attachment_names_the_threads_already_running_by_their_python_names(
    attach_target: AgentTarget, run_ulma: RunFn, tmp_path: Path,
) -> None:
    trace = tmp_path / "attach.ulma"
    result = run_ulma(["attach", str(attach_target.proc.pid), "--duration", "0.5", "--no-report",
                       "-o", str(trace)])
    assert result.returncode == 0, result.stderr
    chrome = run_ulma(["export", str(trace), "--format", "chrome", "-o", "-"])
    assert chrome.returncode == 0, chrome.stderr
    names = {e["args"]["name"] for e in json.loads(chrome.stdout) if e["name"] == "thread_name"}
    # threading's own names for Thread(target=body): "Thread-1 (body)" .. "Thread-20 (body)"
    named = {n.split(" (thread ")[0] for n in names if " (thread " in n}
    assert {f"Thread-{i} (body)" for i in range(1, 21)} <= named, sorted(names)
    attach_target.stop.touch()
    attach_target.proc.communicate(timeout=60)


@pytest.mark.parametrize("value", ["0", "65537"])
def test_max_threads_out_of_range_is_one_line(value: str, run_ulma: RunFn) -> None:
    result = run_ulma(["run", "--max-threads", value, str(SEQUENTIAL), "1"], cwd=PROGRAMS_DIR)
    assert result.returncode != 0
    assert result.stderr.strip() == "ulma: error: --max-threads must be between 1 and 65536"
