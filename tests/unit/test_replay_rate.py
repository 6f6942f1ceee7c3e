"""Waiting is formed at the rate a snapshot is taken with, not at the rate
the replay started with: a calibration refined later applies to everything
replayed before it.  Ticks are nanoseconds here at the true rate 1.0."""

from __future__ import annotations

from ulma import _core
from ulma.format import records
from ulma.format.records import Event

CALL, RETURN, CPU, RUN_DELAY = records.CALL, records.RETURN, records.CPU_SAMPLE, records.CPU_RUN_DELAY
# main(1) calls worker(2): 1000 ns of which 300 CPU (one reading), then 2000 of which
# 1800 CPU with 100 ns of run delay; each reading is followed by the event that made it
STREAM = [Event(0, 0, CPU, 0, 0), Event(0, 0, CPU, RUN_DELAY, 0), Event(1, 1, CALL, 0, 0),
          Event(10, 2, CALL, 0, 0), Event(1000, 300, CPU, 0, 0), Event(1000, 0, CPU, RUN_DELAY, 0),
          Event(1002, 3, CALL, 0, 0), Event(1003, 3, RETURN, 0, 0),
          Event(3000, 2100, CPU, 0, 0), Event(3000, 100, CPU, RUN_DELAY, 0),
          Event(3001, 2, RETURN, 0, 0), Event(3002, 1, RETURN, 0, 0)]


def snapshot(first_rate: float, rate: float = 0.0) -> dict[int, tuple[int, ...]]:
    """Replays STREAM after set_rate(first_rate); the snapshot at `rate` (0: the first)."""
    agg = _core.Aggregator()
    agg.set_rate(first_rate)
    agg.feed(0, records.encode(STREAM))
    agg.close()
    return {row[0]: tuple(row[1:]) for row in agg.snapshot(split=True, rate=rate)[0]}


def without_runnable(funcs: dict[int, tuple[int, ...]]) -> dict[int, tuple[int, ...]]:
    """Which part of an interval's wait was runnable is decided at the first
    rate (a run delay against the wait, aggregate.h): left out here."""
    return {fid: row[:5] + row[6:10] + row[11:] for fid, row in funcs.items()}


def test_a_snapshot_forms_waiting_at_its_own_rate_whatever_the_first_rate_was() -> None:
    right = snapshot(1.0)
    # self wait of worker: 1000 - 300 (its first interval started at main's reading) + 2000 - 1800
    assert right[2][4] == 700 + 200 and right[2][5] == 100, right[2]
    for first in (0.05, 20.0, 600.0):
        assert without_runnable(snapshot(first, rate=1.0)) == without_runnable(right), first
    assert snapshot(1.001, rate=1.0) == right


def test_waiting_is_linear_in_the_rate() -> None:
    # at 2 ns per tick the wall in ticks is worth twice the ns: W - C/2 per interval
    worker = snapshot(1.0, rate=2.0)[2]
    assert worker[4] == (1000 - 150) + (2000 - 900), worker
