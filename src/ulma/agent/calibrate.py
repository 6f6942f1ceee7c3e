"""The probe's own cost, measured at start-up so the monitor can take it out
of the functions (as cProfile's calibration does) and show it as overhead.

An empty function is called in a loop with the hooks off, then with them on,
its events going to a private scratch ring (``_core.agent_scratch``): the
difference per call, over the callbacks each call makes, is what one probe
adds between two timestamps.  Best of a few rounds each way.  The loops are
timed in the thread's CPU time: on a busy machine a round preempted in wall
time would add the other programs' time to one side (a probe of 300 ns where
it costs 30 was seen with ten runnable processes on two cores).
Before a run, when the program has no thread yet, the rounds alternate (the
hooks paused and resumed), so a change in the machine's speed hits both
sides; an attach cannot pause the hooks of a running program, so it times
the loop before starting them and after.
This module lives in ulma's hidden agent folder: its frames are never
reported.  It imports nothing plain python has not loaded (see bootstrap).
"""

import time

from ulma import _core

TYPE_CHECKING = False  # no typing import in the profiled program
if TYPE_CHECKING:
    from collections.abc import Callable

# bench/probe_cost.py: against the best of 41 such rounds, on two cores busy
# with ten runnable processes, 5 000 calls x 7 rounds came within 0.92-1.24
# (median 1.08) where 20 000 x 5 in wall time was 0.9-13x; a third of the work
CALLS = 5_000
ROUNDS = 7
TRIES = 4  # calibrations that found no cost (noise) are made again, this often at most


def _empty() -> None:
    pass


CLOCK = time.thread_time_ns


def _timed(calls: int, clock: "Callable[[], int]" = CLOCK) -> int:
    # the loop allocates nothing (range() would make an int per turn past 256): an allocator's
    # noise, large under a sanitizer's malloc, would otherwise be timed on both sides
    f = _empty
    turns = [None] * calls
    t0 = clock()
    for _ in turns:
        f()
    return clock() - t0


def hooks_off(calls: int = CALLS, rounds: int = ROUNDS, clock: "Callable[[], int]" = CLOCK) -> int:
    """Best time of the loop before the agent starts (ns)."""
    return min(_timed(calls, clock) for _ in range(rounds))


def _timed_with(switch: "Callable[[bool], None]", calls: int, clock: "Callable[[], int]") -> int:
    """The loop's time with `switch` on, then off again whatever happens."""
    switch(True)
    try:
        return _timed(calls, clock)
    finally:
        switch(False)


def hooks_on(calls: int = CALLS, rounds: int = ROUNDS, clock: "Callable[[], int]" = CLOCK) -> int:
    """Best time of the loop with the agent on, into the scratch ring (ns)."""
    return min(_timed_with(_core.agent_scratch, calls, clock) for _ in range(rounds))


def interleaved(calls: int = CALLS, rounds: int = ROUNDS,
                clock: "Callable[[], int]" = CLOCK) -> tuple[int, int]:
    """(best hooks-off time, best hooks-on time), alternating; the agent runs."""
    pairs = [(_timed_with(_core.agent_pause, calls, clock), _timed_with(_core.agent_scratch, calls, clock))
             for _ in range(rounds)]
    return min(off for off, _ in pairs), min(on for _, on in pairs)


def callbacks_per_call(native_calls: bool, engine: str) -> int:
    """PY_START and PY_RETURN; with native calls on sys.monitoring, CALL too."""
    return 3 if native_calls and engine == "monitoring" else 2


def probe_ns(off: int, on: int, callbacks: int, calls: int = CALLS) -> float:
    return max(0.0, (on - off) / (calls * callbacks))
