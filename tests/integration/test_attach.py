"""Hot connect and disconnect: `ulma attach PID` to a program carrying an idle agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import AgentTarget, agent_target, subprocess_env, wait_for_agent

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
TARGET = PROGRAMS_DIR / "attach_target.py"

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]


@pytest.fixture
def target(tmp_path: Path) -> Iterator[AgentTarget]:
    with agent_target(TARGET, tmp_path) as t:
        yield t


def attach_json(run_ulma: RunFn, pid: int, out: Path, duration: float, *more: str) -> dict[str, object]:
    result = run_ulma(["attach", str(pid), "--duration", str(duration), "--no-report", "--json", str(out),
                       *more])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    report: dict[str, object] = json.loads(out.read_text())
    return report


def tick_calls(report: dict[str, object]) -> int:
    functions = report["functions"]
    assert isinstance(functions, list)
    return sum(f["calls"] for f in functions if f["name"] == "tick")


def test_attach_detach_reattach_counts_only_attached_time_and_leaves_the_program_alone(
        target: AgentTarget, run_ulma: RunFn, tmp_path: Path) -> None:
    first = attach_json(run_ulma, target.proc.pid, tmp_path / "a.json", 0.5)
    time.sleep(0.3)  # detached: nothing is counted now
    second = attach_json(run_ulma, target.proc.pid, tmp_path / "b.json", 0.5)
    code, out, err = target.finish()
    assert code == 3 and "Traceback" not in err
    total = int(out.strip().removeprefix("ticks="))
    a, b = tick_calls(first), tick_calls(second)
    assert a > 0 and b > 0
    assert first["dropped"] == second["dropped"] == 0
    # each attachment saw only its own half second, far from everything the program did
    assert a + b < total
    for report in (first, second):
        wall = report["wall_ns"]
        assert isinstance(wall, int) and 0.4e9 < wall < 3e9


# What both programs below read of the hooks: the frame evaluator in use (PEP 523) against the
# default one, and sys.monitoring (3.12+).  Needs ctypes and sys imported.
HOOKS_SEEN = """\
api = ctypes.pythonapi
api.PyInterpreterState_Get.restype = ctypes.c_void_p
evaluator = api._PyInterpreterState_GetEvalFrameFunc
evaluator.restype, evaluator.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
default = ctypes.cast(api._PyEval_EvalFrameDefault, ctypes.c_void_p).value
mon = getattr(sys, "monitoring", None)
"""

# A program that carries an idle agent, watches for the agent's hooks (the frame evaluator on
# 3.11, a sys.monitoring tool on 3.12+) and works once they are on: half a second on its own clock
# (`ends`: then it ends while attached), or until they come off again (`detached`); then prints
# when that was (CLOCK_MONOTONIC, as ulma's).
HOOKED_SPAN = """\
import ctypes, sys, time
import ulma.agent
ulma.agent.install()
""" + HOOKS_SEEN + """\
def hooked():
    return (evaluator(api.PyInterpreterState_Get()) != default
            or (mon is not None and any(mon.get_tool(i) is not None for i in range(6))))
def work(n):
    return n + 1
while not hooked():
    time.sleep(0.001)
on = time.monotonic_ns()
count = 0
while (time.monotonic_ns() - on < 500_000_000) if sys.argv[1] == "ends" else hooked():
    for _ in range(100):
        count = work(count)
    time.sleep(0.001)
print(on, time.monotonic_ns(), flush=True)
"""


# What the program's own view may differ from ulma's by: the agent's calibration after the hooks
# went on, the program's 1 ms polls, its last events after its last reading (10-13 ms here).
HOOKED_SLACK_NS = 200_000_000


def hooked_span(tmp_path: Path, run_ulma: RunFn, mode: str, duration: float) -> tuple[int, int]:
    """(run time in ulma attach's JSON, the program's own time under the hooks) of HOOKED_SPAN in
    `mode`, attached for up to `duration` s."""
    program = tmp_path / "hooked_span.py"
    program.write_text(HOOKED_SPAN)
    proc = subprocess.Popen([sys.executable, str(program), mode], env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_agent(proc)
        # Not reaped until the monitor is done: /proc keeps an ended program (a zombie), so the
        # monitor sees the end only when its --duration runs out, seconds after the program's.
        out = tmp_path / f"{mode}.json"
        result = run_ulma(["attach", str(proc.pid), "--duration", str(duration), "--no-report",
                           "--json", str(out)])
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    on, off = map(int, stdout.split()[-2:])
    report = json.loads(out.read_text())
    assert any(f["name"] == "work" and f["calls"] > 0 for f in report["functions"])
    wall = report["wall_ns"]
    assert isinstance(wall, int)
    return wall, off - on


def test_attach_run_time_is_the_programs_own_when_it_ends_while_attached(
        tmp_path: Path, run_ulma: RunFn) -> None:
    wall, hooked = hooked_span(tmp_path, run_ulma, "ends", 4)
    # from when the hooks went on (give or take the agent's calibration) to the program's end,
    # not the monitor's 4 s
    assert abs(wall - hooked) < HOOKED_SLACK_NS, (wall, hooked)


def test_attach_run_time_is_the_programs_time_under_the_hooks_when_it_detaches(
        tmp_path: Path, run_ulma: RunFn) -> None:
    wall, hooked = hooked_span(tmp_path, run_ulma, "detached", 0.5)
    assert abs(wall - hooked) < HOOKED_SLACK_NS, (wall, hooked)


def test_attach_measures_what_it_is_asked_to_and_splits_the_time(
        target: AgentTarget, run_ulma: RunFn, tmp_path: Path) -> None:
    out = tmp_path / "split.json"
    result = run_ulma(["attach", str(target.proc.pid), "--duration", "0.5", "--no-report", "--json", str(out),
                       "--native-calls", "--exclude", "tick"])
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["cpu_readings"] is True and report["native_calls"] is True and report["probe_ns"] > 0
    names = {f["name"]: f for f in report["functions"]}
    assert "tick" not in names  # excluded: not traced, its time is in main's self time
    assert report["scope"] == ["--exclude tick"]
    assert names["time.sleep"]["native"] and names["time.sleep"]["calls"] > 0
    main = names["main"]
    assert main["cpu_ns"] + main["wait_ns"] + main["overhead_ns"] + main["unmeasured_ns"] == main["total_ns"]
    code, _out, err = target.finish()
    assert code == 3 and "Traceback" not in err


def test_fifty_attachments_leak_no_descriptors_memory_or_shared_memory(
        target: AgentTarget, run_ulma: RunFn, tmp_path: Path) -> None:
    shm_before = set(os.listdir("/dev/shm"))
    attach_json(run_ulma, target.proc.pid, tmp_path / "warm.json", 0.05)
    fds, rss = target.fd_count(), target.rss_kib()
    for i in range(50):
        report = attach_json(run_ulma, target.proc.pid, tmp_path / f"{i}.json", 0.02)
        assert report["dropped"] == 0
    assert target.fd_count() == fds
    assert target.rss_kib() < rss + 16 * 1024  # rings are unmapped after each detach
    assert set(os.listdir("/dev/shm")) <= shm_before
    code, _out, _err = target.finish()
    assert code == 3


# What a program can see of the hooks a profiler may install: the interpreter's frame evaluator
# (PEP 523, the default engine on 3.11), profile and trace functions (also those set for new threads)
# and the sys.monitoring tools (3.12+).  Printed as JSON; `install` first installs an idle agent.
HOOKS_PROBE = """\
import ctypes, json, sys, threading
if sys.argv[1:] == ["install"]:
    import ulma.agent
    ulma.agent.install()
""" + HOOKS_SEEN + """\
print(json.dumps({
    "evaluator_replaced": evaluator(api.PyInterpreterState_Get()) != default,
    "profile": [repr(sys.getprofile()), repr(threading.getprofile())],
    "trace": [repr(sys.gettrace()), repr(threading.gettrace())],
    "tools": [mon.get_tool(i) for i in range(6)] if mon else [],
}))
"""
NO_HOOKS = {"evaluator_replaced": False, "profile": ["None", "None"], "trace": ["None", "None"]}


def test_an_idle_agent_has_no_hooks_installed(tmp_path: Path, run_ulma: RunFn) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(HOOKS_PROBE)
    # The probe sees the hooks of a profiled program, on every engine of this Python ...
    engines = ["pep523", *(["monitoring"] if sys.version_info >= (3, 12) else [])]
    for engine in engines:
        profiled = run_ulma(["run", "--no-report", "--engine", engine, str(probe)])
        assert profiled.returncode == 0, profiled.stderr
        seen = json.loads(profiled.stdout)
        if engine == "pep523":
            assert seen["evaluator_replaced"] is True, seen
        else:
            assert "ulma" in seen["tools"], seen
    # ... and none in a program whose agent waits for an attach.
    done = subprocess.run([sys.executable, str(probe), "install"], capture_output=True, text=True,
                          timeout=60, env=subprocess_env(), check=False)
    assert done.returncode == 0, done.stderr
    idle = json.loads(done.stdout)
    assert {k: idle[k] for k in NO_HOOKS} == NO_HOOKS, idle
    assert idle["tools"] == ([None] * 6 if sys.version_info >= (3, 12) else []), idle


def test_attach_to_a_process_that_cannot_carry_an_agent_is_one_line(run_ulma: RunFn) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        result = run_ulma(["attach", str(sleeper.pid)])
    finally:
        sleeper.kill()
        sleeper.wait()
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    # not Python: nothing to load ulma's agent into (tests/integration/test_inject.py has the rest)
    assert "is not a Python process" in result.stderr or "Debian package: gdb" in result.stderr


def test_attach_to_a_missing_process_is_one_line(run_ulma: RunFn) -> None:
    result = run_ulma(["attach", "99999999"])
    assert result.returncode != 0 and result.stderr.strip() == "ulma: error: no process 99999999"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to start a process as another user")
def test_attach_to_another_users_process_is_refused_in_one_line(run_ulma: RunFn) -> None:
    other = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "30"])
    try:
        time.sleep(0.2)
        result = run_ulma(["attach", str(other.pid)])
    finally:
        other.kill()
        other.wait()
    assert result.returncode != 0
    assert "belongs to another user" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_run_wait_attach_starts_an_idle_agent_and_passes_the_exit_code(
        tmp_path: Path, run_ulma: RunFn) -> None:
    stop = tmp_path / "stop"
    proc = subprocess.Popen([sys.executable, "-m", "ulma", "run", "--wait-attach", str(TARGET), str(stop)],
                            cwd=PROGRAMS_DIR, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "carries an idle agent" in line, line
        pid = int(line.split("`ulma attach ")[1].rstrip("`\n"))
        wait_for_agent(proc, pid)
        report = attach_json(run_ulma, pid, tmp_path / "w.json", 0.3)
        assert tick_calls(report) > 0
        stop.touch()
        out, _err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3 and out.startswith("ticks=")


def test_the_live_view_over_an_attachment_detaches_on_q_and_the_program_goes_on(
        target: AgentTarget) -> None:
    from tests.integration.test_live_cli import Terminal, after_view

    with Terminal(["attach", str(target.proc.pid), "--limit", "5"]) as term:
        term.read_until("attach_target.py:12")  # tick() is in the table
        term.type(b"q")
        assert term.wait() == 0
        tail = after_view(term.seen)
    assert "detached; the program goes on" in tail, tail
    assert "tick  attach_target.py:12" in tail and "dropped 0" in tail, tail
    assert target.proc.poll() is None  # still running, hooks off
    code, out, _err = target.finish()
    assert code == 3 and out.startswith("ticks=")


def test_a_second_monitor_is_told_at_once_that_one_is_attached_and_the_first_goes_on(
        target: AgentTarget, run_ulma: RunFn, tmp_path: Path) -> None:
    out = tmp_path / "first.json"
    first = subprocess.Popen([sys.executable, "-m", "ulma", "attach", "--no-live", "--duration", "20",
                              "--no-report", "--json", str(out), str(target.proc.pid)],
                             env=subprocess_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert first.stderr is not None
        assert "attached to process" in first.stderr.readline()
        started = time.monotonic()
        second = run_ulma(["attach", "--no-live", "--duration", "1", str(target.proc.pid)])
        waited = time.monotonic() - started
        assert second.returncode == 1
        [line] = second.stderr.splitlines()
        assert "already attached" in line and f"monitor process {first.pid}" in line, line
        # told, not left to wait for the 10 s the monitor gives an agent to answer
        assert waited < 8, f"the second monitor waited {waited:.1f} s"
        first.send_signal(2)  # Ctrl-C detaches the first: its report covers what it saw
        first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0
    assert tick_calls(json.loads(out.read_text())) > 0
    code, _, _ = target.finish()
    assert code == 3


def test_attach_to_an_asyncio_program_names_the_task_that_ran_before_it(
        run_ulma: RunFn, tmp_path: Path) -> None:
    """The task started before the attachment: it is named and followed from its first step
    seen (its steps counted only while attached), and the program's output and exit code are its
    own."""
    with agent_target(PROGRAMS_DIR / "attach_tasks_target.py", tmp_path) as t:
        time.sleep(0.3)  # the ticker runs a while unwatched
        report = attach_json(run_ulma, t.proc.pid, tmp_path / "tasks.json", 0.5)
        code, out, err = t.finish()
    assert code == 3 and "Traceback" not in err, err
    wakeups = int(out.strip().removeprefix("wakeups="))
    asyncio_ = report["asyncio"]
    assert isinstance(asyncio_, dict)
    (ticker,) = [task for task in asyncio_["task_list"] if task["name"] == "ticker"]
    assert ticker["coroutine"] == "ticker" and ticker["state"] in ("running", "waiting"), ticker
    # a step per wakeup while attached (0.5 s of 2 ms sleeps: fewer than the program made in all)
    assert 10 <= ticker["steps"] < wakeups, (ticker, wakeups)
