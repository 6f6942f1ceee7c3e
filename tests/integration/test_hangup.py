"""`ulma run` when its terminal goes away, when it is told to stop, and when its monitor is killed.

Real terminals: each test runs ulma in a tmux server of its own (ulma execs as the pane's process, so
it is the session's leader, as when a terminal emulator or ssh runs it), and closes the terminal with
`tmux kill-session`.  Within 5 s every ulma process and the program must be gone and the --json file
written.  A killed monitor leaves the program's output for the next ulma to name."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import agent_target, missing_dependency, subprocess_env

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
TARGET = PROGRAMS_DIR / "hangup_target.py"
HOT = PROGRAMS_DIR / "report_hot.py"
GONE_WITHIN = 5.0  # seconds for every process to end once told to
DEADLINE = 60.0  # seconds for anything to show up (a loaded machine starts Python slowly)

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (one that ended and waits to be reaped is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in (b"Z", b"X")


def wait_gone(pids: list[int], within: float) -> list[int]:
    """Polls until none of `pids` is alive or `within` seconds passed; the ones still alive."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def wait_for(what: str, check: Callable[[], bool], seen: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"never saw {what}; the terminal showed:\n{seen()}")
        time.sleep(0.05)


class Tmux:
    """A tmux server of this test's own; the processes it started (`pids`) are SIGKILLed at the end."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.name = f"ulma-test-{os.getpid()}-{time.monotonic_ns()}"
        self.env = env
        self.conf = tmp_path / "tmux.conf"
        self.conf.write_text("set -g remain-on-exit on\nset -g history-limit 5000\n")
        self.pids: list[int] = []

    def tmux(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.name, "-f", str(self.conf), *args], env=self.env,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            pytest.fail(f"tmux {' '.join(args)}: {out.stderr}")
        return out.stdout

    def start(self, session: str, argv: list[str], *, ignore_hup: bool = False) -> int:
        """Runs argv as the pane's process (exec: it is the session leader); its pid.
        `ignore_hup`: it starts with SIGHUP ignored, as under nohup."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items() if k in PASSED)
        trap = "trap '' HUP; " if ignore_hup else ""
        command = f"{trap}cd {shlex.quote(str(PROGRAMS_DIR))} && exec env {env} {shlex.join(argv)}"
        self.tmux("new-session", "-d", "-s", session, "-x", "150", "-y", "45", command)
        pid = int(self.tmux("display-message", "-p", "-t", session, "#{pane_pid}"))
        self.pids.append(pid)
        return pid

    def screen(self, session: str) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", session)

    def dead(self, session: str) -> bool:
        return self.tmux("display-message", "-p", "-t", session, "#{pane_dead}").strip() == "1"

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.name, "kill-server"], env=self.env, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=30)
        for pid in self.pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


# what the pane's command gets from the test's environment
PASSED = ("PATH", "PYTHONPATH", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "XDG_STATE_HOME", "HOME",
          "TERM", "ULMA_REQUIRE_DEPS")


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A private XDG_STATE_HOME, where ulma keeps the program's output."""
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def env(state_dir: Path) -> dict[str, str]:
    return subprocess_env({"XDG_STATE_HOME": str(state_dir), "TERM": "xterm-256color"})


@pytest.fixture
def tmux(tmp_path: Path, env: dict[str, str]) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        missing_dependency("tmux is not installed (Debian package tmux)")
    server = Tmux(tmp_path, env)
    try:
        yield server
    finally:
        server.close()


def ulma_run(*args: str) -> list[str]:
    return [sys.executable, "-m", "ulma", "run", *args]


def started(tmux: Tmux, session: str, pid_file: Path) -> int:
    """Waits for the live view and the program; the program's pid."""
    def screen() -> str:
        return tmux.screen(session)

    wait_for("the live view", lambda: "hangup_target.py:" in screen(), screen)
    wait_for("the program's pid", pid_file.exists, screen)
    pid = int(pid_file.read_text())
    tmux.pids.append(pid)  # killed at the end if a failed test left it running
    return pid


def report(path: Path) -> dict[str, Any]:
    assert path.exists(), "the --json report was not written"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def calls_of(data: dict[str, Any], name: str) -> int:
    return sum(int(f["calls"]) for f in data["functions"]
               if f["name"] == name and f["file"].endswith(TARGET.name))


def kept_runs(state_dir: Path) -> list[Path]:
    root = state_dir / "ulma" / "output"
    return sorted(root.iterdir()) if root.exists() else []


def test_closing_the_terminal_while_the_program_runs_ends_both_and_keeps_json_trace_and_output(
        tmux: Tmux, tmp_path: Path, state_dir: Path, env: dict[str, str], run_ulma: RunFn) -> None:
    pid_file, out, trace = tmp_path / "pid", tmp_path / "report.json", tmp_path / "run.ulma"
    ulma = tmux.start("s", ulma_run("--json", str(out), "-o", str(trace), str(TARGET), str(pid_file), "120"))
    program = started(tmux, "s", pid_file)
    tmux.tmux("kill-session", "-t", "s")
    left = wait_gone([ulma, program], GONE_WITHIN)
    assert not left, f"still running {GONE_WITHIN} s after the terminal closed: {left} " \
                     f"(ulma {ulma}, program {program})"
    assert calls_of(report(out), "work") > 0
    assert run_ulma(["report", str(trace)], env=env).returncode == 0
    # The program's output could not be shown: it is kept, and only that.
    [kept] = kept_runs(state_dir)
    assert f"hangup_target {program} on stdout" in (kept / "stdout").read_text()
    assert f"hangup_target {program} on stderr" in (kept / "stderr").read_text()


def test_closing_the_terminal_after_the_program_ended_ends_ulma_and_writes_json(
        tmux: Tmux, tmp_path: Path) -> None:
    pid_file, out = tmp_path / "pid", tmp_path / "report.json"
    ulma = tmux.start("s", ulma_run("--json", str(out), str(TARGET), str(pid_file), "0.5"))
    program = started(tmux, "s", pid_file)
    wait_for("the program's end in the view", lambda: "program exited" in tmux.screen("s"),
             lambda: tmux.screen("s"))
    tmux.tmux("kill-session", "-t", "s")
    left = wait_gone([ulma, program], GONE_WITHIN)
    assert not left, f"still running {GONE_WITHIN} s after the terminal closed: {left} (ulma {ulma})"
    assert calls_of(report(out), "work") > 0


def test_sigterm_ends_ulma_and_the_program_that_outlived_its_terminal(tmux: Tmux, tmp_path: Path) -> None:
    pid_file, out = tmp_path / "pid", tmp_path / "report.json"
    ulma = tmux.start("s", ulma_run("--json", str(out), str(TARGET), str(pid_file), "120", "--ignore-hup"))
    program = started(tmux, "s", pid_file)
    tmux.tmux("kill-session", "-t", "s")
    time.sleep(1.0)
    assert alive(program), "the program ignores SIGHUP: closing the terminal must not end it"
    os.kill(ulma, signal.SIGTERM)
    left = wait_gone([ulma, program], GONE_WITHIN)
    assert not left, f"still running {GONE_WITHIN} s after SIGTERM: {left} (ulma {ulma}, program {program})"
    assert calls_of(report(out), "work") > 0


def test_with_sighup_ignored_a_closed_terminal_closes_the_view_and_ulma_ends_with_the_program(
        tmux: Tmux, tmp_path: Path) -> None:
    pid_file, out = tmp_path / "pid", tmp_path / "report.json"
    ulma = tmux.start("s", ulma_run("--json", str(out), str(TARGET), str(pid_file), "5"), ignore_hup=True)
    program = started(tmux, "s", pid_file)
    tmux.tmux("kill-session", "-t", "s")
    time.sleep(0.5)
    assert alive(program), "SIGHUP is ignored (inherited, as under nohup): the program goes on"
    assert not wait_gone([program], DEADLINE), "the program did not end"
    left = wait_gone([ulma], GONE_WITHIN)
    assert not left, f"ulma {ulma} still running {GONE_WITHIN} s after its program ended"
    assert calls_of(report(out), "work") > 0


LEFTOVER = re.compile(r"^ulma: the output of `(.*)` was never shown .* kept in (\S+) \(stdout, stderr\)",
                      re.M)


def test_a_killed_monitor_leaves_the_output_for_the_next_ulma_to_name_and_shown_output_is_removed(
        tmux: Tmux, tmp_path: Path, state_dir: Path, env: dict[str, str], run_ulma: RunFn) -> None:
    pid_file = tmp_path / "pid"
    # --ignore-hup: the program outlives its session's leader (ulma), and writes on
    ulma = tmux.start("a", ulma_run(str(TARGET), str(pid_file), "1", "--ignore-hup"))
    program = started(tmux, "a", pid_file)
    os.kill(ulma, signal.SIGKILL)
    assert not wait_gone([program], DEADLINE), "the program did not end"

    # The next ulma names it, in one line.
    result = run_ulma(["run", "--no-live", "--no-report", str(HOT)], env=env)
    assert result.returncode == 0, result.stderr
    found = LEFTOVER.findall(result.stderr)
    assert len(found) == 1, result.stderr
    command, path = found[0]
    assert str(TARGET) in command
    kept = Path(path)
    assert kept.parent == state_dir / "ulma" / "output"
    assert f"hangup_target {program} on stdout" in (kept / "stdout").read_text()
    assert "finished" in (kept / "stdout").read_text()  # written after the monitor was killed
    assert f"hangup_target {program} on stderr" in (kept / "stderr").read_text()
    assert stat.S_IMODE(kept.stat().st_mode) == 0o700
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    assert {stat.S_IMODE((kept / name).stat().st_mode) for name in ("stdout", "stderr")} == {0o600}

    # A live run that shows its output leaves nothing behind (the earlier one is still named).
    pid_file_b = tmp_path / "pid-b"
    tmux.start("b", ulma_run("--live-exit", str(TARGET), str(pid_file_b), "0.2"))
    wait_for("the second ulma's end", lambda: tmux.dead("b"), lambda: tmux.screen("b"))
    screen = tmux.screen("b")
    assert f"hangup_target {pid_file_b.read_text()} on stdout" in screen, screen
    assert LEFTOVER.search(screen), screen
    assert kept_runs(state_dir) == [kept]


ATTACH_TARGET = PROGRAMS_DIR / "attach_target.py"


def attached(tmux: Tmux, session: str) -> None:
    wait_for("the attached live view", lambda: "tick" in tmux.screen(session), lambda: tmux.screen(session))


def test_closing_the_terminal_of_a_live_attach_detaches_writes_json_and_the_program_goes_on(
        tmux: Tmux, tmp_path: Path) -> None:
    out = tmp_path / "attach.json"
    with agent_target(ATTACH_TARGET, tmp_path) as target:
        ulma = tmux.start("s", [sys.executable, "-m", "ulma", "attach", "--json", str(out),
                                str(target.proc.pid)])
        attached(tmux, "s")
        tmux.tmux("kill-session", "-t", "s")
        left = wait_gone([ulma], GONE_WITHIN)
        assert not left, f"ulma attach {ulma} still running {GONE_WITHIN} s after its terminal closed"
        assert sum(int(f["calls"]) for f in report(out)["functions"] if f["name"] == "tick") > 0
        assert target.proc.poll() is None, "detaching must leave the program running"
        code, stdout, _ = target.finish()
        assert code == 3 and stdout.startswith("ticks=")


def test_sigterm_to_ulma_attach_in_its_live_view_detaches_and_writes_json(tmux: Tmux, tmp_path: Path) -> None:
    out = tmp_path / "attach.json"
    with agent_target(ATTACH_TARGET, tmp_path) as target:
        ulma = tmux.start("s", [sys.executable, "-m", "ulma", "attach", "--json", str(out),
                                str(target.proc.pid)])
        attached(tmux, "s")
        os.kill(ulma, signal.SIGTERM)
        left = wait_gone([ulma], GONE_WITHIN)
        assert not left, f"ulma attach {ulma} still running {GONE_WITHIN} s after SIGTERM"
        assert "Traceback" not in tmux.screen("s")
        assert sum(int(f["calls"]) for f in report(out)["functions"] if f["name"] == "tick") > 0
        assert target.proc.poll() is None, "detaching must leave the program running"
        code, stdout, _ = target.finish()
        assert code == 3 and stdout.startswith("ticks=")
