"""The tick clock's calibration against CLOCK_MONOTONIC cannot be skewed by
a preemption: with three CPU hogs per core started by the test, every one of
a hundred sessions starts with a rate within 0.1 % of a long calibration
(one unbracketed pair of reads was off by up to 2 600x there), and the rate
refined over a session is within 0.01 %."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import kill_group
from ulma import _core
from ulma.monitor.session import Session

SESSIONS = 100


@pytest.fixture
def cpu_hogs() -> Iterator[int]:
    count = 3 * len(os.sched_getaffinity(0))
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            for _ in range(count)]
    try:
        time.sleep(0.2)  # let them take the cores
        yield count
    finally:
        for hog in hogs:
            kill_group(hog.pid)
            hog.wait()


def test_every_first_calibration_under_cpu_hogs_is_within_a_thousandth_of_a_long_one(
    cpu_hogs: int,
) -> None:
    t0, m0, w0 = _core.clock_pair()
    hints, quick = [], []
    for _ in range(SESSIONS):
        fd = os.memfd_create("ulma-test")
        try:
            core = _core.Session(fd, 1 << 16, 1)
            hints.append(core.agent_info()["ns_per_tick_hint"])
            core.close()
        finally:
            os.close(fd)
        quick.append(_core.calibrate_clock())
    time.sleep(0.5)
    t1, m1, w1 = _core.clock_pair()
    assert max(w0, w1) < 100_000, (w0, w1)  # the reference itself: pairs known within 0.1 ms of 1 s+
    reference = (m1 - m0) / (t1 - t0)
    off = sorted(abs(h / reference - 1) for h in hints + quick)
    assert off[-1] <= 1e-3, (f"{cpu_hogs} hogs: {sum(e > 1e-3 for e in off)} of {len(off)} off by more "
                             f"than 0.1 %, worst {off[-1]:.2%}")


def test_the_rate_refined_over_a_session_under_cpu_hogs_is_within_a_ten_thousandth(cpu_hogs: int) -> None:
    session = Session(1 << 16, 1)
    try:
        time.sleep(1.0)
        refined = session.ns_per_tick()
        t0, m0, _ = _core.clock_pair()
        time.sleep(1.0)
        t1, m1, _ = _core.clock_pair()
    finally:
        session.close()
    reference = (m1 - m0) / (t1 - t0)
    assert abs(refined / reference - 1) <= 1e-4, (refined, reference)


def test_a_session_started_from_an_earlier_clock_pair_starts_there_and_is_as_exact_under_cpu_hogs(
    cpu_hogs: int,
) -> None:
    """`ulma run` reads the pair when it starts the program's interpreter, and
    makes the session later: the first calibration runs from that pair."""
    t0, m0, w0 = _core.clock_pair()
    hints = []
    for _ in range(SESSIONS):
        start = _core.clock_pair()
        fd = os.memfd_create("ulma-test")
        try:
            core = _core.Session(fd, 1 << 16, 1, clock_start=start)
            counters = core.counters()
            assert (counters["start_ticks"], counters["start_mono_ns"]) == start[:2]
            hints.append(core.agent_info()["ns_per_tick_hint"])
            core.close()
        finally:
            os.close(fd)
    time.sleep(0.5)
    t1, m1, w1 = _core.clock_pair()
    assert max(w0, w1) < 100_000, (w0, w1)
    reference = (m1 - m0) / (t1 - t0)
    off = sorted(abs(h / reference - 1) for h in hints)
    assert off[-1] <= 1e-3, f"{cpu_hogs} hogs: worst {off[-1]:.2%} off"


def test_a_clock_start_from_the_future_or_over_a_minute_old_is_refused() -> None:
    ticks, mono, width = _core.clock_pair()
    fd = os.memfd_create("ulma-test")
    try:
        future, old = (ticks, mono + 10**9, width), (ticks, mono - 61 * 10**9, width)
        for bad in (future, old, (ticks + 10**15, mono, width)):
            with pytest.raises(ValueError, match="clock_start"):
                _core.Session(fd, 1 << 16, 1, clock_start=bad)
        with pytest.raises(TypeError):
            _core.Session(fd, 1 << 16, 1, clock_start=[ticks, mono, width])  # type: ignore[arg-type]
    finally:
        os.close(fd)
