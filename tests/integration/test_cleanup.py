"""Clean-up: a run leaves nothing behind, however it ends: no /dev/shm entry, no file, no process.

The session memory is a name-free memfd, so nothing may appear in /dev/shm at any time (any new entry
fails the test, so these tests assume nothing else on the machine creates /dev/shm entries while they
run). Each run gets its own empty TMPDIR, which must be empty again afterwards. Every process of a run
carries an environment marker, so processes it left behind are found even after they were re-parented
(the marker is read from /proc/PID/environ).
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "cleanup_target.py"
SHM = Path("/dev/shm")
MARKER_VAR = "ULMA_TEST_RUN_MARKER"
READY_TIMEOUT = 60.0
EXIT_TIMEOUT = 60.0
LINGER_TIMEOUT = 10.0

Completed = subprocess.CompletedProcess[str]


def child_setup() -> None:
    """No core dump from os.abort(); SIGINT delivered even if the test runner was started with it ignored."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def list_dir(path: Path) -> set[str]:
    try:
        return set(os.listdir(path))
    except FileNotFoundError:
        return set()


def processes_with_marker(marker: str) -> list[int]:
    """Live processes whose environment holds MARKER_VAR=marker."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(entry))
    return found


def describe_processes(pids: list[int]) -> str:
    lines = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            cmdline = "?"
        lines.append(f"  {pid}: {cmdline}")
    return "\n".join(lines)


@dataclass
class Run:
    """One `ulma run` of cleanup_target.py in its own session, with its own TMPDIR and marker."""

    tmpdir: Path
    mode: str
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)
    shm_before: set[str] = field(default_factory=lambda: list_dir(SHM))
    proc: subprocess.Popen[bytes] | None = None
    stdout: bytes = b""
    stderr: bytes = b""

    def start(self) -> None:
        self.tmpdir.mkdir()
        env = dict(os.environ)
        env.update({MARKER_VAR: self.marker, "TMPDIR": str(self.tmpdir), "PYTHONDONTWRITEBYTECODE": "1"})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ulma", "run", str(PROGRAM), self.mode],
            cwd=self.tmpdir.parent,  # where a core dump would land, if the system writes one
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            bufsize=0,
            preexec_fn=child_setup,
        )

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self.proc is not None
        return self.proc

    def wait_ready(self) -> None:
        """Read stdout until the program printed "ready" (stderr is read along, so no pipe fills up)."""
        deadline = time.monotonic() + READY_TIMEOUT
        streams = {self.process.stdout.fileno(): "stdout", self.process.stderr.fileno(): "stderr"}  # type: ignore[union-attr]
        while b"ready\n" not in self.stdout:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not streams:
                pytest.fail(f"the program never got ready\n{self.output()}")
            readable, _, _ = select.select(list(streams), [], [], remaining)
            for fd in readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    del streams[fd]
                elif streams[fd] == "stdout":
                    self.stdout += chunk
                else:
                    self.stderr += chunk

    def finish(self, timeout: float = EXIT_TIMEOUT) -> int:
        """Wait for ulma to exit and collect its output; fail if it does not, or if it exited but a
        process it started still holds its stdout or stderr."""
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            exited = self.process.poll() is not None
            holders = describe_processes(processes_with_marker(self.marker))
            self.kill_everything()
            out, err = self.process.communicate(timeout=10)
            self.stdout, self.stderr = self.stdout + out, self.stderr + err
            if exited:
                pytest.fail(f"ulma exited, but these processes held its output:\n{holders}\n{self.output()}")
            pytest.fail(f"ulma did not exit within {timeout} s\n{self.output()}")
        self.stdout, self.stderr = self.stdout + out, self.stderr + err
        return self.process.returncode

    def output(self) -> str:
        code = self.proc.returncode if self.proc else None
        return (
            f"exit code: {code}\n--- stdout ---\n{self.stdout.decode(errors='replace')[-3000:]}\n"
            f"--- stderr ---\n{self.stderr.decode(errors='replace')[-6000:]}"
        )

    def kill_everything(self) -> None:
        for pid in processes_with_marker(self.marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def new_shm_entries(self) -> set[str]:
        return list_dir(SHM) - self.shm_before

    def assert_nothing_left(self) -> None:
        deadline = time.monotonic() + LINGER_TIMEOUT
        while (left := processes_with_marker(self.marker)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if left:
            listing = describe_processes(left)
            self.kill_everything()
            pytest.fail(
                f"processes still alive {LINGER_TIMEOUT} s after the run:\n{listing}\n{self.output()}"
            )
        shm = sorted(self.new_shm_entries())
        assert not shm, f"left in /dev/shm: {shm}\n{self.output()}"
        assert not list_dir(self.tmpdir), f"left in TMPDIR: {sorted(list_dir(self.tmpdir))}\n{self.output()}"


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[Callable[[str], Run]]:
    runs: list[Run] = []

    def make(mode: str) -> Run:
        run = Run(tmp_path / f"tmpdir-{len(runs)}", mode)
        runs.append(run)
        run.start()
        return run

    yield make
    for run in runs:  # whatever happened in the test, nothing it started outlives it
        if run.proc is not None:
            run.kill_everything()
            run.process.communicate(timeout=10)


def test_normal_run_leaves_nothing_behind(make_run: Callable[[str], Run]) -> None:
    run = make_run("normal")
    assert run.finish() == 0, run.output()
    run.assert_nothing_left()


def test_program_crashing_with_abort_leaves_nothing_behind(make_run: Callable[[str], Run]) -> None:
    run = make_run("abort")
    code = run.finish()
    assert code != 0, run.output()
    run.assert_nothing_left()


def test_sigint_to_the_process_group_still_prints_the_report_and_leaves_nothing_behind(
    make_run: Callable[[str], Run],
) -> None:
    run = make_run("wait")
    run.wait_ready()
    time.sleep(0.3)
    os.killpg(run.process.pid, signal.SIGINT)
    code = run.finish()
    assert code != 0, run.output()
    report = run.stderr.decode(errors="replace")
    assert "dropped" in report.lower(), f"no report after SIGINT\n{run.output()}"
    assert "spin" in report, f"the report does not list spin()\n{run.output()}"
    run.assert_nothing_left()


@pytest.mark.parametrize("scope", ["process-group", "every-process"])
def test_sigkill_of_ulma_and_the_program_leaves_nothing_behind(
    scope: str, make_run: Callable[[str], Run]
) -> None:
    run = make_run("wait")
    run.wait_ready()
    time.sleep(0.3)
    appeared = sorted(run.new_shm_entries())
    assert not appeared, f"/dev/shm entries appeared during the run: {appeared}"
    assert len(processes_with_marker(run.marker)) >= 1
    if scope == "process-group":
        # ulma and the program (and anything else in ulma's process group) die; whatever ulma runs
        # outside that group must notice and go away by itself.
        os.killpg(run.process.pid, signal.SIGKILL)
    else:
        run.kill_everything()
    run.finish(timeout=LINGER_TIMEOUT + 5)
    assert run.process.returncode == -signal.SIGKILL, run.output()
    run.assert_nothing_left()
