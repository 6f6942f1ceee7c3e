"""Single-step in a real terminal: `ulma run --step` and a step that a detach interrupts.

Each test runs ulma as the pane's process of a tmux server of its own (the harness of test_hangup.py)
and reads the screen as its user would: the "stopped #N: <event> <function>" line, the thread's stack
under it.  Ground truth for the order of events is sys.setprofile in a plain run of the same program."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import agent_target, missing_dependency, subprocess_env
from tests.integration.test_hangup import GONE_WITHIN, Tmux, alive, wait_for, wait_gone
from tests.views.test_live_view import STEPPED, profiled_order

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
ATTACH_TARGET = PROGRAMS_DIR / "attach_target.py"
# " stopped #5: call fib  stepped.py:14  thread tid 624"
STOPPED = re.compile(r"stopped #(\d+): (call|return) (\S+)  (.+?):(\d+)  thread")
ENDED = ("the program has ended", "program exited")
MAX_STEPS = 400  # the program's own events are 12; the rest are the interpreter's shutdown


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        missing_dependency("tmux is not installed (Debian package tmux)")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    server = Tmux(tmp_path, subprocess_env({"XDG_STATE_HOME": str(state), "TERM": "xterm-256color"}))
    try:
        yield server
    finally:
        server.close()


def stop_shown(screen: str) -> tuple[int, str, str, str, list[str]] | None:
    """(number, event, function, file, stack innermost first) of the stop on the screen, if any."""
    lines = screen.splitlines()
    for i, line in enumerate(lines):
        found = STOPPED.search(line)
        if found:
            stack = []
            for frame in lines[i + 1:]:
                words = frame.replace("→", " ").strip().split("  ")
                if len(words) != 2 or ":" not in words[1]:
                    break
                stack.append(words[0].strip())
            return int(found[1]), found[2], found[3], found[4], stack
    return None


def test_ulma_run_step_in_a_real_terminal_shows_the_programs_events_in_order_with_their_stacks(
        tmux: Tmux, tmp_path: Path) -> None:
    truth = profiled_order((), "")
    assert len(truth) == 14 and truth[0] == ("call", "<module>")  # <module>, main, fib's 5 calls
    out = tmp_path / "report.json"
    ulma = tmux.start("s", [sys.executable, "-m", "ulma", "run", "--step", "--json", str(out), str(STEPPED)])
    shown: list[tuple[str, str]] = []
    stacks: list[list[str]] = []
    number = 0
    while True:
        def next_stop(number: int = number) -> bool:
            screen = tmux.screen("s")
            stop = stop_shown(screen)
            return (stop is not None and stop[0] > number) or any(e in screen for e in ENDED)
        wait_for(f"stop #{number + 1}", next_stop, lambda: tmux.screen("s"))
        screen = tmux.screen("s")
        stop = stop_shown(screen)
        if stop is None or stop[0] <= number:
            break  # the program ended
        assert stop[0] == number + 1, f"a stop was skipped or shown twice:\n{screen}"
        number, event, function, file, stack = stop
        if file == STEPPED.name:
            shown.append((event, function))
            stacks.append(stack)
        assert number < MAX_STEPS, f"still stepping after {MAX_STEPS} events:\n{screen}"
        tmux.tmux("send-keys", "-t", "s", "n")
    assert shown == truth
    # the deepest call is shown with the thread's whole stack, innermost first
    assert ["fib", "fib", "fib", "main", "<module>"] in stacks
    wait_for("the program's exit in the header", lambda: "program exited with code 0" in tmux.screen("s"),
             lambda: tmux.screen("s"))
    tmux.tmux("send-keys", "-t", "s", "q")  # leaves step mode
    tmux.tmux("send-keys", "-t", "s", "q")  # leaves the view: the report and the program's output follow
    wait_for("ulma's end", lambda: tmux.dead("s"), lambda: tmux.screen("s"))
    assert not wait_gone([ulma], GONE_WITHIN)
    screen = tmux.screen("s")
    assert "\n2\n" in f"\n{screen}\n", f"the program's output (fib(3) = 2) was not passed through:\n{screen}"
    functions = json.loads(out.read_text())["functions"]
    assert sum(int(f["calls"]) for f in functions if f["name"] == "fib") == 5


def test_a_detach_while_a_thread_is_stopped_releases_it_and_the_program_can_be_attached_again(
        tmux: Tmux, tmp_path: Path) -> None:
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    with agent_target(ATTACH_TARGET, tmp_path) as target:
        pid = target.proc.pid
        ulma = tmux.start("a", [sys.executable, "-m", "ulma", "attach", "--json", str(first), str(pid)])
        wait_for("the attached live view", lambda: "tick" in tmux.screen("a"), lambda: tmux.screen("a"))
        tmux.tmux("send-keys", "-t", "a", "s")
        wait_for("the first stop", lambda: stop_shown(tmux.screen("a")) is not None, lambda: tmux.screen("a"))
        # stopped: the target's only thread waits in the agent and burns no CPU
        cpu = cpu_ticks(pid)
        time.sleep(0.5)
        assert cpu_ticks(pid) - cpu <= 5, "the stopped program kept running"
        os.kill(ulma, signal.SIGTERM)  # the detach, mid-step
        assert not wait_gone([ulma], GONE_WITHIN), f"ulma attach still running {GONE_WITHIN} s after SIGTERM"
        assert "Traceback" not in tmux.screen("a")
        # released: it runs again (it ticks, 200 calls per millisecond)
        deadline = time.monotonic() + GONE_WITHIN
        while cpu_ticks(pid) - cpu <= 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cpu_ticks(pid) - cpu > 5, "the program stayed stopped after the monitor detached"
        assert alive(pid)
        assert sum(int(f["calls"]) for f in json.loads(first.read_text())["functions"]
                   if f["name"] == "tick") > 0
        # and a second attach profiles it as before
        tmux.start("b", [sys.executable, "-m", "ulma", "attach", "--no-live", "--duration", "0.5",
                         "--json", str(second), str(pid)])
        wait_for("the second attach's end", lambda: tmux.dead("b"), lambda: tmux.screen("b"))
        assert sum(int(f["calls"]) for f in json.loads(second.read_text())["functions"]
                   if f["name"] == "tick") > 0, tmux.screen("b")
        code, stdout, _ = target.finish()
        assert code == 3 and stdout.startswith("ticks=")


def cpu_ticks(pid: int) -> int:
    """utime + stime of the process, in clock ticks."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
