"""`ulma attach PID` on a plain python program, started without ulma's agent: ulma loads its agent
into it (a pending call, queued by ulma's own ptrace injector on x86-64, by gdb elsewhere), then
attaches as usual; errors are one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing_dependency, subprocess_env, ulma_command
from ulma.inject import ptrace

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
TARGET = PROGRAMS_DIR / "plain_target.py"
WAIT = 60.0  # for anything the test waits on; a loaded machine is slow, a hang still fails


OWN_INJECTOR = ptrace.available()  # x86-64: no gdb


@pytest.fixture(autouse=True)
def needs_gdb() -> None:
    if not OWN_INJECTOR and shutil.which("gdb") is None:
        missing_dependency("attaching to a plain python program needs gdb (Debian package: gdb)")


def wait_for(what: str, ready: Any, proc: subprocess.Popen[str] | None = None,
             log: Path | None = None) -> None:
    deadline = time.monotonic() + WAIT
    while not ready():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            said = log.read_text() if log is not None else ""
            pytest.fail(f"the process ended while waiting for {what}: {proc.returncode}\n{out}\n{err}\n"
                        f"{said}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class PlainTarget:
    """tests/programs/plain_target.py in MODE, run by plain python (see its docstring)."""

    def __init__(self, tmp_path: Path, mode: str, *, python: Sequence[str] = (sys.executable,),
                 env: dict[str, str] | None = None, extra: Sequence[str] = ()) -> None:
        self.dir = tmp_path / f"control-{mode}"
        self.dir.mkdir()
        self.phase = 0
        self.marks = 0
        self.proc = subprocess.Popen([*python, str(TARGET), str(self.dir), mode, *extra], cwd=tmp_path,
                                     env=env or subprocess_env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        wait_for("the target to start", (self.dir / "ready").exists, self.proc)

    def run_phase(self, k: int) -> None:
        """Has the target call marked() k times (in each of its threads, in `threads` mode)."""
        self.phase += 1
        go = self.dir / f"go-{self.phase}"
        (self.dir / "go.tmp").write_text(str(k))
        os.rename(self.dir / "go.tmp", go)
        wait_for(f"phase {self.phase}", (self.dir / f"done-{self.phase}").exists, self.proc)

    def mark(self) -> int:
        """The target's own count of tick() calls so far, read by itself now (after this call began,
        before it returns)."""
        self.marks += 1
        (self.dir / f"mark-{self.marks}").touch()
        ticks = self.dir / f"ticks-{self.marks}"
        wait_for(f"mark {self.marks}", ticks.exists, self.proc)
        return int(ticks.read_text())

    def finish(self) -> tuple[int, str, str, int]:
        (self.dir / "stop").touch()
        out, err = self.proc.communicate(timeout=WAIT)
        return self.proc.returncode, out, err, int((self.dir / "ticks").read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def targets() -> Iterator[list[PlainTarget]]:
    made: list[PlainTarget] = []
    yield made
    for t in made:
        t.kill()


class Attached:
    """One `ulma attach`: its stderr, its JSON report, and the target's tick counts (its own) read
    before ulma started, once ulma said it was attached, before the Ctrl-C, after ulma ended."""

    def __init__(self, log: str, report: dict[str, Any], marks: tuple[int, int, int, int]) -> None:
        self.log = log
        self.report = report
        self.marks = marks


def attached_phase(target: PlainTarget, k: int, out: Path, extra: Sequence[str] = (),
                   env: dict[str, str] | None = None) -> Attached:
    """`ulma attach PID` (no live view) while the target runs a phase of k marked() calls; Ctrl-C
    detaches."""
    log = out.with_suffix(".err")
    before = target.mark()
    with open(log, "w") as err:
        proc = subprocess.Popen(ulma_command(["attach", str(target.pid), "--no-report", "--json", str(out),
                                              *extra]),
                                env=subprocess_env(env), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, text=True, start_new_session=True)
    try:
        wait_for("ulma to attach", lambda: "attached to process" in log.read_text(), proc, log)
        on = target.mark()
        target.run_phase(k)
        off = target.mark()
        proc.send_signal(signal.SIGINT)
        proc.wait(WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert proc.returncode == 0 and "Traceback" not in text, text
    return Attached(text, json.loads(out.read_text()), (before, on, off, target.mark()))


def calls_of(report: dict[str, Any], name: str) -> int:
    return sum(f["calls"] for f in report["functions"]
               if f["name"] == name and Path(f["file"]).resolve() == TARGET)


def attach_detach_attach(tmp_path: Path, target: PlainTarget, k: int) -> None:
    """Attach (ulma loads its agent), a phase; detached, a phase; attach again (no second load), a
    phase: each report counts exactly its own phase's marked() calls, and the program's output and
    exit code are those of a run nobody attached to."""
    first = attached_phase(target, k, tmp_path / "first.json")
    target.run_phase(k + 1)  # detached: counted by nobody
    second = attached_phase(target, k + 2, tmp_path / "second.json")
    code, out, err, _ = target.finish()
    threads = 4 if "threads" in str(target.dir) else 1
    expected = [k * threads, (k + 1) * threads, (k + 2) * threads]
    assert code == 3 and err == "", (code, err)
    assert out == "".join(f"phase {n}: marked={c}\n" for n, c in enumerate(expected, 1))
    assert "loaded ulma's agent into process" in first.log, first.log
    assert "loaded ulma's agent" not in second.log, second.log  # the agent was there: no second load
    assert calls_of(first.report, "marked") == expected[0]
    assert calls_of(second.report, "marked") == expected[2]
    assert first.report["dropped"] == second.report["dropped"] == 0
    # nothing of ulma's own code in the program's profile
    for report in (first.report, second.report):
        assert not [f["name"] for f in report["functions"] if f["name"] in ("_attach", "_load")]
    if "sleep" not in str(target.dir):
        for attached in (first, second):
            counted_only_while_attached(attached, "threads" in str(target.dir))


def counted_only_while_attached(attached: Attached, workers: bool) -> None:
    """The tick() calls counted lie between the target's own counts read before ulma started and
    after it ended, and include all those between its counts read while surely attached.  The main
    thread reads its counts between two of its ticks; a worker thread may be inside tick() at each
    reading (its call made, its count not yet stored): one call each way, per worker."""
    before, on, off, after = attached.marks
    slack = 4 if workers else 0
    counted = calls_of(attached.report, "tick")
    assert on < off, attached.marks  # the target ticked while attached: the lower bound says something
    assert off - on - slack <= counted <= after - before + slack, (counted, attached.marks)


def test_attach_to_a_sleeping_plain_python_loads_the_agent_once_and_counts_only_attached_time(
        tmp_path: Path, targets: list[PlainTarget]) -> None:
    targets.append(target := PlainTarget(tmp_path, "sleep"))
    attach_detach_attach(tmp_path, target, 1000)


def test_attach_to_a_busy_plain_python_counts_only_attached_time(
        tmp_path: Path, targets: list[PlainTarget]) -> None:
    targets.append(target := PlainTarget(tmp_path, "busy"))
    attach_detach_attach(tmp_path, target, 5000)


def test_attach_to_a_multithreaded_plain_python_counts_every_threads_attached_calls(
        tmp_path: Path, targets: list[PlainTarget]) -> None:
    targets.append(target := PlainTarget(tmp_path, "threads"))
    attach_detach_attach(tmp_path, target, 3000)


def test_attach_to_a_plain_python_holding_the_gil_drops_nothing_while_its_agent_starts_and_stops(
        tmp_path: Path, targets: list[PlainTarget]) -> None:
    """The agent's hooks go on before it answers ATTACH (it still times its probe) and come off only
    once it has read DETACH, both in its listener thread, which waits for the GIL: here up to a
    second each time, as the target keeps it that long.  On a 4 MiB ring (262,144 events: a quarter
    to half a second of this target, where each answer takes a second or more) nothing is dropped
    only if ulma drains meanwhile.  (An answer takes 6-8 s here: ulma waits up to 30 s for it.)"""
    targets.append(target := PlainTarget(tmp_path, "busy", extra=["--hold-gil", "1"]))
    attached = attached_phase(target, 1000, tmp_path / "held.json", extra=["--ring-size", "4M"])
    code, out, err, _ = target.finish()
    assert (code, out, err) == (3, "phase 1: marked=1000\n", "")
    assert "loaded ulma's agent into process" in attached.log, attached.log
    assert calls_of(attached.report, "marked") == 1000
    assert attached.report["dropped"] == 0
    counted_only_while_attached(attached, workers=False)


def test_attach_loads_this_ulma_into_a_program_that_cannot_import_ulma_on_the_same_python(
        tmp_path: Path, targets: list[PlainTarget]) -> None:
    env = subprocess_env()
    env.pop("PYTHONPATH", None)
    # -S: no site-packages either, so no ulma in the program's environment (as it checks first)
    cannot = subprocess.run([sys.executable, "-S", "-c", "import ulma"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=WAIT)
    assert cannot.returncode != 0 and "No module named 'ulma'" in cannot.stderr
    targets.append(target := PlainTarget(tmp_path, "sleep", python=(sys.executable, "-S"), env=env))
    attach_detach_attach(tmp_path, target, 1000)


def run_attach(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(ulma_command(["attach", *args]), env=env or subprocess_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=WAIT * 2)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("ulma: error: "), result.stderr
    return lines[0]


def test_attach_to_a_process_that_is_not_python_is_one_line() -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        line = one_line_error(run_attach([str(sleeper.pid)]))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert f"process {sleeper.pid} is not a Python process" in line


def test_attach_is_not_hung_by_a_sanitizer_runtime_preloaded_for_programs() -> None:
    """LD_PRELOAD in ulma's environment is meant for the programs it runs; gdb, started with it,
    hangs on AddressSanitizer's runtime (what .ci/sanitize preloads).  ulma gives gdb its
    environment without the loader's and Python's variables, so the answer comes as without."""
    found = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True)
    runtime = found.stdout.strip()
    if found.returncode != 0 or not os.path.isabs(runtime):
        missing_dependency("needs gcc's AddressSanitizer runtime (Debian package: gcc)")
    sleeper = subprocess.Popen(["sleep", "60"])
    env = subprocess_env({"LD_PRELOAD": runtime, "ASAN_OPTIONS": "detect_leaks=0"})
    try:
        line = one_line_error(run_attach([str(sleeper.pid)], env=env))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert f"process {sleeper.pid} is not a Python process" in line


def test_attach_without_gdb_loads_the_agent_on_x86_64_and_names_gdbs_package_elsewhere(
        tmp_path: Path, targets: list[PlainTarget]) -> None:
    targets.append(target := PlainTarget(tmp_path, "sleep"))
    empty = tmp_path / "bin"
    empty.mkdir()
    if OWN_INJECTOR:  # ulma's own ptrace injector: no gdb on PATH, no matter
        attached = attached_phase(target, 10, tmp_path / "run.json", env={"PATH": str(empty)})
        assert "through ptrace" in attached.log, attached.log
        assert calls_of(attached.report, "marked") == 10
    else:
        line = one_line_error(run_attach([str(target.pid)], env=subprocess_env({"PATH": str(empty)})))
        assert "gdb" in line and "Debian package: gdb" in line
        target.run_phase(10)  # unharmed
    code, out, err, _ = target.finish()
    assert (code, out, err) == (3, "phase 1: marked=10\n", "")


def other_python() -> str | None:
    """A CPython 3.11-3.13 other than ours, as pyenv (CI) keeps them side by side."""
    ours = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for path in sorted(Path(sys.base_prefix).parent.glob("3.1[123]*/bin/python3")):
        if not path.parent.parent.name.startswith(ours + "."):
            return str(path)
    return None


def test_attach_to_a_python_of_another_version_without_ulma_is_one_line(
        tmp_path: Path, targets: list[PlainTarget]) -> None:
    python = other_python()
    if python is None:
        pytest.skip("no CPython 3.11-3.13 other than this one next to it")
    env = subprocess_env()
    env.pop("PYTHONPATH", None)
    targets.append(target := PlainTarget(tmp_path, "sleep", python=(python, "-S"), env=env))
    line = one_line_error(run_attach([str(target.pid)]))
    assert "cannot import ulma" in line and "install ulma in its environment" in line, line
    target.run_phase(10)
    code, out, err, _ = target.finish()
    assert (code, out, err) == (3, "phase 1: marked=10\n", "")


def test_attach_to_a_python_older_than_3_11_is_one_line(tmp_path: Path) -> None:
    old = next(iter(sorted(Path(sys.base_prefix).parent.glob("3.10*/bin/python3"))), None)
    if old is None:
        pytest.skip("no CPython 3.10 next to this one")
    proc = subprocess.Popen([str(old), "-c", "import time\nwhile True: time.sleep(0.02)"])
    try:
        time.sleep(0.5)
        line = one_line_error(run_attach([str(proc.pid)]))
    finally:
        proc.kill()
        proc.wait()
    assert "older than 3.11" in line


DUMPABLE_OFF = """\
import ctypes, sys, time
assert ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) == 0  # PR_SET_DUMPABLE 0
print("ready", flush=True)
time.sleep(60)
"""


def test_attach_when_ptrace_is_not_permitted_names_the_capability(tmp_path: Path) -> None:
    """A program that is not dumpable can be traced only with CAP_SYS_PTRACE, which ulma lacks here."""
    if shutil.which("setpriv") is None:
        missing_dependency("dropping a capability needs setpriv (Debian package: util-linux)")
    proc = subprocess.Popen([sys.executable, "-c", DUMPABLE_OFF], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        drop = (["setpriv", "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace"]
                if os.getuid() == 0 else [])
        result = subprocess.run([*drop, *ulma_command(["attach", str(proc.pid)])], env=subprocess_env(),
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=WAIT)
    finally:
        proc.kill()
        proc.wait()
    line = one_line_error(result)
    assert "CAP_SYS_PTRACE" in line, line


def test_attach_to_a_program_stuck_in_a_long_c_call_gives_up_in_time_and_leaves_it_unharmed(
        tmp_path: Path, targets: list[PlainTarget]) -> None:
    targets.append(target := PlainTarget(tmp_path, "sleep", extra=["--wake-on-usr1"]))
    started = time.monotonic()
    line = one_line_error(run_attach([str(target.pid), "--inject-timeout", "1"]))
    assert "did not run ulma's call within 1 s" in line, line
    assert time.monotonic() - started < WAIT
    # woken, the program runs the queued call: ulma has given up, so it does nothing
    target.proc.send_signal(signal.SIGUSR1)
    wait_for("the target to wake", (target.dir / "woke").exists, target.proc)
    target.run_phase(10)
    from ulma.agent.listener import agent_addresses

    assert agent_addresses(target.pid) == []
    code, out, err, _ = target.finish()
    assert err == "" and code == 3
    # `socket` imported: the call ran (it imports socket to reach ulma); ulma was never loaded
    assert out == "phase 1: marked=10\nsocket imported: True; ulma imported: False\n"


def test_attach_with_a_bad_inject_timeout_is_one_line() -> None:
    line = one_line_error(run_attach(["1", "--inject-timeout", "-1"]))
    assert "--inject-timeout must be" in line


SEIZE = """\
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
assert libc.ptrace(0x4206, int(sys.argv[1]), None, None) == 0, ctypes.get_errno()  # PTRACE_SEIZE
print("traced", flush=True)
sys.stdin.read()
"""


def test_attach_to_a_program_another_tracer_holds_is_one_line(
        tmp_path: Path, targets: list[PlainTarget]) -> None:
    targets.append(target := PlainTarget(tmp_path, "sleep"))
    tracer = subprocess.Popen([sys.executable, "-c", SEIZE, str(target.pid)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert tracer.stdout is not None
        if tracer.stdout.readline() != "traced\n":
            pytest.skip("this machine does not let the test trace its own child")
        line = one_line_error(run_attach([str(target.pid)]))
    finally:
        tracer.communicate("")
    assert f"already traced by process {tracer.pid}" in line, line
    target.run_phase(10)  # unharmed, and free again
    code, out, err, _ = target.finish()
    assert (code, out, err) == (3, "phase 1: marked=10\n", "")


# Stands in for a Python 3.14 target (there is none here): runs, in its main thread, the script whose
# path a fake sys.remote_exec leaves in DIR/remote-exec, as 3.14's sys.remote_exec has the target do.
REMOTE_EXEC_STAND_IN = """\
import os, sys, time
control = sys.argv[1]
open(os.path.join(control, "ready"), "w").close()
while not os.path.exists(os.path.join(control, "stop")):
    request = os.path.join(control, "remote-exec")
    if os.path.exists(request):
        with open(request) as f:
            path = f.read()
        os.unlink(request)
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), {"__name__": "__main__"})
    time.sleep(0.02)
print("done")
"""


def test_where_sys_remote_exec_exists_ulma_uses_it_instead_of_gdb(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 3.14 path, with sys.remote_exec faked (no 3.14 here): only the plumbing around it is real."""
    import ulma.inject
    from ulma.agent.listener import agent_addresses
    from ulma.inject import gdb

    control = tmp_path / "control"
    control.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", REMOTE_EXEC_STAND_IN, str(control)], env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    calls: list[tuple[int, str]] = []

    def remote_exec(pid: int, path: str) -> None:
        calls.append((pid, path))
        assert os.stat(path).st_mode & 0o077 == 0  # private to us
        (control / "request.tmp").write_text(path)
        os.rename(control / "request.tmp", control / "remote-exec")

    def no_gdb(pid: int, commands: list[str]) -> str:
        raise AssertionError("gdb was run")

    def no_ptrace(pid: int, code: str) -> tuple[tuple[int, int] | None, bool]:
        raise AssertionError("ulma's ptrace injector was run")

    monkeypatch.setattr(sys, "remote_exec", remote_exec, raising=False)
    monkeypatch.setattr(gdb, "run", no_gdb)
    monkeypatch.setattr(ptrace, "add_pending_call", no_ptrace)
    try:
        wait_for("the target to start", (control / "ready").exists, proc)
        loaded = ulma.inject.ensure_agent(proc.pid, 30)
        assert loaded is not None and "through sys.remote_exec" in loaded, loaded
        assert agent_addresses(proc.pid)
        assert [pid for pid, _ in calls] == [proc.pid]
        assert not os.path.exists(calls[0][1])  # answered: the script's file is gone
        assert ulma.inject.ensure_agent(proc.pid, 30) is None and len(calls) == 1  # there: not again
        (control / "stop").touch()
        out, err = proc.communicate(timeout=WAIT)
        assert (proc.returncode, out, err) == (0, "done\n", "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def gdb_can_call_into_a_process() -> str | None:
    """None if gdb here can make a call in a stopped process, else why not (one line)."""
    from ulma.inject import gdb

    if shutil.which("gdb") is None:
        return "gdb (Debian package: gdb) is not installed"
    sleeper = subprocess.Popen(["sleep", "30"])  # a throwaway: a failed call can break its sleep
    try:
        out = gdb.run(sleeper.pid, ["call (int) getpid()"])
    finally:
        sleeper.kill()
        sleeper.wait()
    if f"= {sleeper.pid}" in out:
        return None
    said = [ln.strip() for ln in out.splitlines() if ln.strip()]
    return "gdb cannot call into a process on this machine: " + (said[-1] if said else "?")[:160]


def test_where_ulma_has_no_injector_of_its_own_gdb_queues_the_call(
        tmp_path: Path, targets: list[PlainTarget], monkeypatch: pytest.MonkeyPatch) -> None:
    """The way on arm64, taken here by pretending this machine has no injector of ulma's own: gdb
    queues the call, the agent loads and a second load finds it there.  (gdb 13 cannot put back the
    extended state on an x86-64 CPU with AMX tiles: there the test says so and is skipped.)"""
    import ulma.inject
    from ulma.agent.listener import agent_addresses

    why = gdb_can_call_into_a_process()
    if why is not None:
        if shutil.which("gdb") is None:
            missing_dependency(why)
        pytest.skip(why)
    monkeypatch.setattr(ptrace, "available", lambda: False)
    targets.append(target := PlainTarget(tmp_path, "busy"))
    loaded = ulma.inject.ensure_agent(target.pid, WAIT)
    assert loaded is not None and "through gdb" in loaded, loaded
    assert agent_addresses(target.pid)
    assert ulma.inject.ensure_agent(target.pid, WAIT) is None
    target.run_phase(10)
    code, out, err, _ = target.finish()
    assert (code, out, err) == (3, "phase 1: marked=10\n", "")
