"""Single-step (ulma.monitor.step, records.h "Single-step") driven through the
control channel as the live view drives it, on every engine: step over a
call, Ctrl-C while stopped, threads, and a monitor that dies mid-step.
Ground truth: the program's own known calls (fib) and what it prints."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ulma.agent import resolve_engine
from ulma.monitor.live import LiveRun
from ulma.monitor.session import Options, Run, Target
from ulma.monitor.step import Stop

PROGRAM = Path(__file__).resolve().parents[1] / "programs" / "stepped.py"
WAIT_S = 20.0


def wait_for(ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@contextmanager
def stepped(engine: str, *args: str) -> Iterator[LiveRun]:
    run = Run(Target("script", str(PROGRAM), args), Options(engine=resolve_engine(engine)),
              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    live = LiveRun(run).start()
    try:
        yield live
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
        live.done.wait(WAIT_S)
        run.finish()


_pending: dict[int, bytes] = {}


def line(live: LiveRun) -> str:
    """The program's next line of output; fails after WAIT_S (a deadlock)."""
    out = live.run.proc.stdout
    assert out is not None
    fd = out.fileno()
    deadline = time.monotonic() + WAIT_S
    while b"\n" not in _pending.get(fd, b""):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no line from the program in {WAIT_S} s")
        data = os.read(fd, 4096)
        if not data:
            raise AssertionError("the program's output ended")
        _pending[fd] = _pending.get(fd, b"") + data
    text, _pending[fd] = _pending[fd].split(b"\n", 1)
    return text.decode().strip()


def stopped_at(live: LiveRun, after: int) -> Stop:
    """Waits for a stop later than stop number `after`."""
    found: list[Stop] = []

    def ready() -> bool:
        state, stop = live.stepper.state()
        if state == "stopped" and stop is not None and stop.seq > after:
            found.append(stop)
            return True
        return False
    wait_for(ready, f"a stop after #{after}")
    return found[0]


def name(live: LiveRun, fid: int) -> str:
    wait_for(lambda: fid in live.symbols(), f"function #{fid} to be known")
    return live.symbols()[fid].name


def test_shift_n_steps_over_a_call_to_its_return_at_the_same_depth(engine: str) -> None:
    with stepped(engine, "wait") as live:
        wait_for(lambda: any(s.name == "<module>" and s.file == str(PROGRAM)
                             for s in live.symbols().values()), "the program to start")
        st = live.stepper
        st.stop()
        assert live.run.proc.stdin is not None
        live.run.proc.stdin.write(b"go\n")
        live.run.proc.stdin.close()
        stop = stopped_at(live, 0)
        while name(live, stop.fid) != "fib":  # (the stdin decoder, main): one event at a time
            st.next()
            stop = stopped_at(live, stop.seq)
        assert stop.kind == "call" and [name(live, f) for f in stop.frames] == ["fib", "main", "<module>"]
        seq = st.over()
        stop = stopped_at(live, stop.seq)
        assert st.acknowledged(seq) == "applied"
        # fib(3)'s own return: its 4 inner calls and their returns were stepped over
        assert (stop.kind, name(live, stop.fid)) == ("return", "fib")
        assert [name(live, f) for f in stop.frames] == ["fib", "main", "<module>"]
        st.next()
        stop = stopped_at(live, stop.seq)
        assert (stop.kind, name(live, stop.fid)) == ("return", "main")
        st.cont()
        assert line(live) == "2"
        assert live.done.wait(WAIT_S) and live.run.returncode == 0


def test_ctrl_c_while_stopped_reaches_the_program_and_its_handler_ends_it_normally(engine: str) -> None:
    with stepped(engine, "spin") as live:
        assert line(live) == "spinning"
        live.stepper.stop()
        stop = stopped_at(live, 0)
        assert name(live, stop.fid) == "fib"
        live.interrupt()  # SIGINT, as the view's ^C sends it
        assert line(live) == "interrupted"
        assert live.done.wait(WAIT_S)
        assert live.run.returncode == 0  # as under python: the handler ran, the program ended
        assert live.stepper.state()[0] == "signaled"


def test_threads_run_on_while_one_is_stopped_and_c_releases_it(engine: str) -> None:
    with stepped(engine, "threads") as live:
        assert line(live) == "started"
        live.stepper.stop()
        stop = stopped_at(live, 0)
        assert stop.os_tid != live.run.proc.pid  # a worker (the main thread waits in readline)
        # only that thread stops: the others hold nothing it needs, nor it what they need,
        # and run to their end; the main thread then waits for the stopped one
        assert live.run.proc.stdin is not None
        live.run.proc.stdin.write(b"end\n")
        live.run.proc.stdin.flush()
        for _ in range(3):
            assert line(live) == "finished"
        assert live.stepper.state() == ("stopped", stop)  # it stayed stopped meanwhile
        live.stepper.cont()
        assert [line(live), line(live)] == ["finished", "done"]
        assert live.done.wait(WAIT_S) and live.run.returncode == 0


def test_ctrl_c_while_a_worker_is_stopped_ends_step_mode_and_the_program_ends_as_under_python(
        engine: str) -> None:
    """The main thread handles Ctrl-C and then waits for the workers: the one
    stopped in step mode must be let go, or the program never ends."""
    with stepped(engine, "threads") as live:
        assert line(live) == "started"
        live.stepper.stop()
        stop = stopped_at(live, 0)
        assert stop.os_tid != live.run.proc.pid  # a worker (the main thread waits in readline)
        live.interrupt()  # SIGINT, as the view's ^C sends it
        assert line(live) == "interrupted"
        assert [line(live) for _ in range(5)] == ["finished"] * 4 + ["done"]
        assert live.done.wait(WAIT_S) and live.run.returncode == 0
        assert live.stepper.state()[0] == "idle"


MONITOR = textwrap.dedent("""
    import sys, time, subprocess
    from ulma.monitor.session import Options, Run, Target
    from ulma.monitor.live import LiveRun
    program, engine, out = sys.argv[1:]
    run = Run(Target("script", program, ("threads",)), Options(engine=engine),
              stdin=subprocess.PIPE, stdout=open(out, "wb"), stderr=subprocess.DEVNULL)
    live = LiveRun(run).start()
    while b"started" not in open(out, "rb").read():
        time.sleep(0.01)
    live.stepper.stop()
    while live.stepper.state()[0] != "stopped":
        time.sleep(0.005)
    print(run.proc.pid, flush=True)
    import os
    os._exit(0)  # the monitor dies (the program's stdin with it), its program stopped mid-step
""")


def test_a_monitor_that_dies_mid_step_releases_the_stopped_thread(engine: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # the monitor imports ulma as this test does (installed, or the tree on PYTHONPATH)
    got = subprocess.run([sys.executable, "-c", MONITOR, str(PROGRAM), resolve_engine(engine), str(out)],
                         capture_output=True, text=True, timeout=WAIT_S, check=True)
    pid = int(got.stdout.split()[0])

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{pid}/stat") as f:  # a zombie whose parent died: init reaps it
            return f.read().split(") ")[1].startswith("Z")
    try:
        wait_for(gone, "the program to finish without its monitor")
    finally:
        if not gone():
            os.kill(pid, signal.SIGKILL)
    assert out.read_text().split() == ["started", *["finished"] * 4, "done"]


def test_run_step_stops_the_program_at_its_first_call_before_anything_of_it_ran(engine: str) -> None:
    # what `ulma run --step` does: the stop is posted before the program starts
    run = Run(Target("script", str(PROGRAM), ()), Options(engine=resolve_engine(engine)),
              stdout=subprocess.PIPE, stderr=subprocess.PIPE, step=True)
    live = LiveRun(run).start()
    try:
        stop = stopped_at(live, 0)
        assert (stop.kind, name(live, stop.fid)) == ("call", "<module>")
        assert live.symbols()[stop.fid].file == str(PROGRAM)
        live.stepper.next()
        stop = stopped_at(live, stop.seq)
        assert (stop.kind, name(live, stop.fid)) == ("call", "main")
        live.stepper.cont()
        assert line(live) == "2"
        assert live.done.wait(WAIT_S) and run.returncode == 0
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
        live.done.wait(WAIT_S)
        run.finish()
