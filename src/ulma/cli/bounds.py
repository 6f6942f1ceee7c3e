"""The range of every numeric option of every command, in one place.

The C core's limits come from the C core (``_core.LIMITS``, from records.h
and symbols.h), never from a copy here.  ``Parser.parse`` (errors.py) checks
each option named in ``BOUNDS`` that the command has, right after parsing: a
value outside its range is one line on stderr and exit code 2, before
anything starts.
"""

from __future__ import annotations

import math
import threading

from ulma import _core
from ulma.cli.errors import UsageError
from ulma.monitor.eventloop import MAX_BLOCK_MS

TYPE_CHECKING = False  # typing is not imported on `ulma run`'s way to the program
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

LIMITS: dict[str, int] = dict(_core.LIMITS)
MIN_RING_BYTES = LIMITS["MIN_RING_BYTES"]
MAX_RING_BYTES = LIMITS["MAX_RING_BYTES"]
PID_MAX = (1 << 31) - 1  # pid_t


def fmt_size(n: int | float) -> str:
    """1048576 -> '1M': sizes as --ring-size takes them."""
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{int(n) // scale}{unit}"
    return str(n)


def _number(n: int | float) -> str:
    return f"{n:.0f}" if isinstance(n, float) and n.is_integer() else str(n)


class Bound:
    """`option` takes values from `low` to `high` (`low` itself excluded
    when `above`); `zero`: 0 is allowed too, meaning what it says."""

    __slots__ = ("above", "high", "low", "option", "show", "unit", "why_low", "zero")

    def __init__(self, option: str, low: int | float, high: int | float, *, above: bool = False,
                 zero: str = "", show: Callable[[int | float], str] = _number, unit: str = "",
                 why_low: str = "") -> None:
        self.option, self.low, self.high, self.above = option, low, high, above
        self.zero, self.show, self.unit, self.why_low = zero, show, unit, why_low

    def inside(self, value: int | float) -> bool:
        if self.zero and value == 0:
            return True
        if not math.isfinite(value):
            return False
        return (self.low < value if self.above else self.low <= value) and value <= self.high

    def message(self, value: int | float) -> str:
        low, high = self.show(self.low), self.show(self.high) + self.unit
        if self.above:
            text = f"{self.option} must be more than {low} and at most {high}"
        elif self.zero:
            text = f"{self.option} must be 0 ({self.zero}) or between {low} and {high}"
        else:
            text = f"{self.option} must be between {low} and {high}"
        if self.why_low and math.isfinite(value) and value < self.low:
            text += f": {self.why_low}"
        return text


# option dest -> its bound; an option of this name means the same in every command
BOUNDS: dict[str, Bound] = {
    "ring_size": Bound(
        "--ring-size", MIN_RING_BYTES, MAX_RING_BYTES, show=fmt_size,
        why_low=f"a smaller ring cannot hold what one thread writes while the monitor waits "
                f"{LIMITS['DRAIN_WAIT_US'] // 1000} ms between drains, and drops events"),
    # tests only (hidden): a ring below the minimum, to force drops
    "test_ring_size": Bound("--test-ring-size", 1, MAX_RING_BYTES, show=fmt_size),
    "max_threads": Bound("--max-threads", 1, LIMITS["MAX_THREADS"]),
    "cpu_interval": Bound("--cpu-interval", 0, LIMITS["MAX_CPU_INTERVAL_US"], unit=" microseconds"),
    "id_limit": Bound("--id-limit", LIMITS["MIN_ID_LIMIT"], LIMITS["ID_LIMIT"], zero="the default"),
    # a profile has at most ID_LIMIT functions, so at most that many rows
    "limit": Bound("--limit", 1, LIMITS["ID_LIMIT"], zero="all rows"),
    # the longest wait Python can make (threading.TIMEOUT_MAX)
    "duration": Bound("--duration", 0, threading.TIMEOUT_MAX, above=True, unit=" seconds"),
    "pid": Bound("PID", 1, PID_MAX),
    # the dial: an overhead of 0 would mean tracing nothing; 100 %% is plain time again
    "budget": Bound("--budget", 0, 100, above=True, unit=" per cent"),
    "refresh": Bound("--refresh", 1, 60_000, unit=" ms"),
    # `ulma history compare`: slower by more than PCT %% per call
    "threshold": Bound("--threshold", 0, 1_000_000, unit=" per cent"),
    # --push-pprof: a profile at most ten times a second, at least once an hour
    "push_interval": Bound("--push-interval", 0.1, 3600, unit=" seconds"),
    "loop_block": Bound("--loop-block", 0, MAX_BLOCK_MS, unit=" ms"),
}


def check(opts: argparse.Namespace) -> None:
    """Raises UsageError for the first option outside its range."""
    for dest, bound in BOUNDS.items():
        value = getattr(opts, dest, None)
        if value is not None and not bound.inside(value):
            raise UsageError(bound.message(value))
