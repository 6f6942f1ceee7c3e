"""What a call costs while the ring is full (a stalled monitor) next to while it has room.

    python bench/full_ring.py [--engine E] [--calls N] [--rounds R] [--depth D]

One process, R rounds; each round times the same loop of N calls to a tiny function (from D
frames deep: a stack restatement walks the whole stack) three ways, in rotating order:

  plain   no agent
  room    the agent on an in-process session whose ring holds every event
  full    the agent on a tiny ring that nobody drains: full after a few events, every later
          event is dropped (as while a monitor is stopped)

with the agent's default CPU readings (every 100 us).  Prints the median ns per call of each and
the ratios side by side: full/room is the figure the design holds to (at most 1.5x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

from ulma import _core
from ulma.agent import DEFAULT_CPU_INTERVAL_US, resolve_engine

TARGET = 1.5


def leaf(i: int) -> int:
    return i


def loop(n: int) -> int:
    start = time.perf_counter_ns()
    for i in range(n):
        leaf(i)
    return time.perf_counter_ns() - start


def below(depth: int, fn: Callable[[], int]) -> int:
    return below(depth - 1, fn) if depth else fn()


def timed(mode: str, engine: str, calls: int, depth: int) -> tuple[float, int]:
    """(ns per call, events dropped)."""
    if mode == "plain":
        return below(depth, lambda: loop(calls)) / calls, 0
    fd = os.memfd_create("ulma-full-ring", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    ring = (2 * calls + 4096) * 16 * 2 if mode == "room" else 4096
    session = _core.Session(fd, ring, 4)
    try:
        _core.agent_start(fd, engine, cpu_interval_us=DEFAULT_CPU_INTERVAL_US)
        try:
            ns = below(depth, lambda: loop(calls))
        finally:
            _core.agent_stop()
        session.drain()
        dropped = sum(t["dropped"] for t in session.threads())
    finally:
        session.close()
        os.close(fd)
    return ns / calls, dropped


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", default="auto")
    p.add_argument("--calls", type=int, default=300_000)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--depth", type=int, default=20)
    args = p.parse_args()
    engine = resolve_engine(args.engine)
    modes = ["plain", "room", "full"]
    per_call: dict[str, list[float]] = {m: [] for m in modes}
    ratios: list[float] = []
    dropped = 0
    timed("room", engine, args.calls // 10, args.depth)  # warm-up
    for r in range(args.rounds):
        got = {}
        for mode in modes[r % 3:] + modes[:r % 3]:
            got[mode], d = timed(mode, engine, args.calls, args.depth)
            per_call[mode].append(got[mode])
            dropped = max(dropped, d) if mode == "full" else dropped
        ratios.append(got["full"] / got["room"])
    med = {m: statistics.median(v) for m, v in per_call.items()}
    full_ratio = statistics.median(ratios)
    print(f"Python {sys.version.split()[0]}, engine {engine}, {args.calls:,} calls from {args.depth} frames "
          f"deep, {args.rounds} rounds (medians); the full ring dropped {dropped:,} events a round")
    print(f"ns per call:  plain {med['plain']:.1f}   ring with room {med['room']:.1f}   "
          f"ring full {med['full']:.1f}")
    print(f"full/room {full_ratio:.2f}x [{min(ratios):.2f}-{max(ratios):.2f}] "
          f"({'ok' if full_ratio <= TARGET else 'MISS'}: target <= {TARGET}x)   "
          f"room/plain {med['room'] / med['plain']:.2f}x   full/plain {med['full'] / med['plain']:.2f}x")


if __name__ == "__main__":
    main()
