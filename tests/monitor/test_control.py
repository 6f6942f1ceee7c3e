"""The control channel (ulma.monitor.control, records.h): a function switched
off and on again while a real program runs, as the live view does it, and a
hostile writer in the channel.  Ground truth: the program makes its calls in
rounds the test starts, and prints what each round did."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from ulma import _core
from ulma.agent import DEFAULT_CPU_INTERVAL_US, resolve_engine
from ulma.monitor.control import CTL_OFF
from ulma.monitor.live import LiveRun
from ulma.monitor.profile import FunctionStats, Profile
from ulma.monitor.session import Options, Run, Target

PROGRAM = Path(__file__).resolve().parents[1] / "programs" / "switched.py"
WAIT_S = 20.0


class Driven:
    """The program under ulma, its rounds started through stdin."""

    def __init__(self, engine: str, cpu_interval_us: int = DEFAULT_CPU_INTERVAL_US) -> None:
        self.run = Run(Target("script", str(PROGRAM), ()),
                       Options(engine=resolve_engine(engine), cpu_interval_us=cpu_interval_us),
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.live = LiveRun(self.run).start()
        self.lines: list[str] = []

    def round(self, n: int) -> None:
        stdin, stdout = self._pipes()
        stdin.write(f"{n}\n".encode())
        stdin.flush()
        line = stdout.readline().decode()
        assert line, self.run.proc.stderr.read().decode() if self.run.proc.stderr else ""
        self.lines.append(line)

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        assert self.run.proc.stdin is not None and self.run.proc.stdout is not None
        return self.run.proc.stdin, self.run.proc.stdout

    def fid(self, name: str) -> int:
        """The session's id of `name` in the program, once the monitor has read it."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with self.run.session.lock:
                found = [s.id for s in self.run.session.symbols.values()
                         if s.name == name and s.file == str(PROGRAM)]
            if found:
                return found[0]
            time.sleep(0.01)
        raise AssertionError(f"{name} never seen")

    def end(self) -> Profile:
        stdin, _ = self._pipes()
        stdin.write(b"q\n")
        stdin.close()
        self.live.done.wait(WAIT_S)
        assert self.live.error is None
        result = self.run.finish()
        assert result.returncode == 0
        return result.profile

    def kill(self) -> None:
        if self.run.proc.poll() is None:
            self.run.proc.kill()
        self.live.stop()


@pytest.fixture
def driven(engine: str) -> Iterator[Driven]:
    d = Driven(engine)
    try:
        yield d
    finally:
        d.kill()


def plain_output(rounds: list[int]) -> list[str]:
    feed = "".join(f"{n}\n" for n in rounds) + "q\n"
    out = subprocess.run([sys.executable, str(PROGRAM)], input=feed, capture_output=True, text=True,
                         timeout=60, check=True)
    return out.stdout.splitlines(keepends=True)


def named(profile: Profile, name: str) -> FunctionStats:
    rows = [f for f in profile.functions if f.name == name and f.file == str(PROGRAM)]
    assert len(rows) == 1, rows
    return rows[0]


def wait_acked(d: Driven, seq: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if any(c.seq == seq for c in d.run.session.control.done):
            return
        time.sleep(0.005)
    raise AssertionError(f"command {seq} never acknowledged")


def caught_up(d: Driven, caller_calls: int) -> Profile:
    """The live profile once the monitor has read `caller_calls` calls of caller."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        snap = d.live.snapshot().profile
        if any(f.name == "caller" and f.calls == caller_calls for f in snap.functions):
            return snap
        time.sleep(0.01)
    raise AssertionError("the monitor never read the round")


def test_a_function_switched_off_and_on_counts_exactly_the_calls_made_while_on(driven: Driven) -> None:
    rounds = [20_000, 30_000, 40_000]
    driven.round(rounds[0])  # on
    hot = driven.fid("hot")
    (off,) = driven.live.control.switch([hot], off=True)
    driven.round(rounds[1])  # the program's first event after waking applies the command
    wait_acked(driven, off.seq)
    assert off.status == "applied" and driven.live.control.is_off(hot)
    snap = caught_up(driven, caller_calls=2)  # the live view, once it read round 2
    assert named(snap, "hot").off and named(snap, "hot").calls == rounds[0]
    (on,) = driven.live.control.switch([hot], off=False)
    driven.round(rounds[2])
    wait_acked(driven, on.seq)
    assert on.status == "applied" and not driven.live.control.is_off(hot)
    profile = driven.end()

    f, caller = named(profile, "hot"), named(profile, "caller")
    assert f.calls == rounds[0] + rounds[2]  # nothing made while on is lost, nothing while off counted
    assert caller.calls == len(rounds)
    assert not f.off and f.off_ns > 0
    assert off.done_ns is not None and on.done_ns is not None
    assert f.off_ns == on.done_ns - off.done_ns
    # the caller's self time holds hot's time while it was off: marked as such
    assert caller.untraced_callees
    assert driven.lines == plain_output(rounds)  # the program's output is unchanged


def test_garbage_in_the_channel_is_refused_counted_and_changes_nothing(driven: Driven) -> None:
    core = driven.run.session.core
    driven.round(1000)
    hot = driven.fid("hot")
    assert core.post(CTL_OFF, 999_999) == 1  # no such function
    assert core.post(CTL_OFF, 0) == 2  # id 0 is nobody
    assert core.post(77, hot) == 3  # no such op
    driven.round(1000)
    assert core.control()["refused"] == 3 and core.control()["acked"] == 3
    statuses = [core.command(k) for k in (1, 2, 3)]
    assert all(st is not None and st[0] == "refused" and st[1] > 0 for st in statuses), statuses
    # a hostile writer: a slot whose number is not the one expected, then a
    # `posted` far beyond what the channel holds
    cmd = _core.LAYOUT["CONTROL_CMD_BYTES"]
    slot4 = 64 + 3 * cmd
    core.scribble(slot4, (12345).to_bytes(8, "little") + CTL_OFF.to_bytes(4, "little")
                  + hot.to_bytes(4, "little"))
    core.scribble(8, (4).to_bytes(8, "little"))  # posted = 4
    driven.round(1000)
    core.scribble(8, (10**12).to_bytes(8, "little"))
    driven.round(1000)
    assert core.control()["refused"] == 5
    profile = driven.end()
    assert named(profile, "hot").calls == 4000 and not named(profile, "hot").off_ns
    assert driven.lines == plain_output([1000] * 4)


def readings(d: Driven) -> int:
    """CPU clock readings the monitor has read from the program's (one) thread."""
    with d.run.session.lock:
        threads = d.run.session.core.threads()
    return sum(int(t["cpu_readings"]) for t in threads)


def test_a_new_cpu_clock_interval_takes_effect_while_the_program_runs(driven: Driven) -> None:
    """From the default 100 µs to 5 ms: a round after the acknowledgement reads the clock at
    most once per 5 ms of the round's wall time (timed around it here, so longer than the
    program's own), two more at most at its edges; before, at least ten times as often."""
    calls = 600_000
    t0 = time.monotonic()
    driven.round(calls)
    before_s = time.monotonic() - t0
    snap_before = readings_after(driven, 1)
    assert snap_before >= 0.1 * before_s / 100e-6, (snap_before, before_s)  # ~1 a 100 µs while it ran
    cmd = driven.live.control.set_interval(5000)
    driven.round(10)  # the program's next events poll the channel
    wait_acked(driven, cmd.seq)
    assert cmd.status == "applied", cmd
    assert driven.run.session.agent_info()["cpu_interval_us"] == 5000
    assert [us for _, us in driven.live.control.intervals] == [5000]
    start = readings_after(driven, 2)
    t0 = time.monotonic()
    driven.round(calls)
    after_s = time.monotonic() - t0
    made = readings_after(driven, 3) - start
    assert made <= after_s / 5e-3 + 2, (made, after_s)
    assert driven.lines == plain_output([calls, 10, calls])


def readings_after(d: Driven, caller_calls: int) -> int:
    caught_up(d, caller_calls)
    return readings(d)


def test_a_cpu_clock_interval_is_refused_when_the_run_reads_no_cpu_clock(engine: str) -> None:
    d = Driven(engine, cpu_interval_us=0)
    try:
        d.round(1000)
        cmd = d.live.control.set_interval(5000)
        d.round(10)
        wait_acked(d, cmd.seq)
        assert cmd.status == "refused" and d.live.control.intervals == []
        assert d.run.session.agent_info()["cpu_interval_us"] == 0
        with pytest.raises(ValueError, match="1 to"):
            d.live.control.set_interval(0)
        d.end()
    finally:
        d.kill()
