"""Instructions per traced event, counted by callgrind (exact, unlike wall time on a busy machine).

    python bench/per_event.py [--engine E] [--cpu-interval US] [--depth N] [--workload fib|afib]

runs recursive fib (or, with --workload afib, the same recursion as coroutines awaiting each
other, driven by send() with no event loop: each call a coroutine's start and return) three times
under `valgrind --tool=callgrind`, counting only what runs inside
the measured region (the fib calls, entered through `map`, so `--toggle-collect=map_next`):

  plain   no agent
  room    the agent on an in-process session whose ring holds every event
  full    the agent on a tiny ring nobody drains: it fills at once and every later event is
          dropped (a stalled monitor)
  floor   the recording floor (`ulma run --recording-floor`): the same engine's hooks reading the
          clock and making one 16-byte store, nothing else

and prints the instructions each event adds to plain Python, with room, with a full ring and at the
recording floor; full tracing's share of the floor's (target at most 1.15); and the ratio of full
to room.  The agent is started without calibration and with CPU readings every
`--cpu-interval` microseconds (default 0: none, the hot path alone; valgrind runs ~50x slower, so
readings would come ~50x more often per event than in a real run).  `--depth` runs fib below that
many extra frames (a restated stack is walked whole).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Coroutine

from ulma_bench.callgrind import callgrind_loop

FIB_N = 18
ROUNDS = 3


def fib(n: int) -> int:
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def calls(n: int) -> int:
    """Calls fib(n) makes, itself included."""
    return 1 if n < 2 else 1 + calls(n - 1) + calls(n - 2)


async def afib(n: int) -> int:
    if n < 2:
        return n
    return await afib(n - 1) + await afib(n - 2)


def drive(coro: Coroutine[None, None, int]) -> int:
    try:
        coro.send(None)
    except StopIteration as done:
        return int(done.value)
    raise RuntimeError("afib never suspends")


WORKLOAD = "fib"


def nested(depth: int) -> int:
    if depth:
        return nested(depth - 1)
    if WORKLOAD == "afib":
        return sum(map(lambda _: drive(afib(FIB_N)), range(ROUNDS)))
    return sum(map(lambda _: fib(FIB_N), range(ROUNDS)))  # map_next brackets the region


def child(mode: str, engine: str, interval: int, depth: int) -> None:
    from ulma import _core
    from ulma.agent import resolve_engine

    if mode == "plain":
        nested(depth)
        return
    fd = os.memfd_create("ulma-per-event", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    session = _core.Session(fd, 4096 if mode == "full" else (64 << 20), 4)
    _core.agent_start(fd, resolve_engine(engine), empty=2 if mode == "floor" else 0, cpu_interval_us=interval)
    try:
        nested(depth)
    finally:
        _core.agent_stop()
    session.drain()
    if mode == "floor":  # writes nothing to the ring
        session.close()
        os.close(fd)
        return
    (thread,) = session.threads()
    print(f"DROPPED={thread['dropped']}")
    session.close()
    os.close(fd)


def instructions(mode: str, args: argparse.Namespace) -> tuple[int, str]:
    return callgrind_loop([sys.executable, __file__, "--child", mode, "--engine", args.engine,
                           "--cpu-interval", str(args.cpu_interval), "--depth", str(args.depth),
                           "--workload", args.workload], mode)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", default="auto")
    p.add_argument("--cpu-interval", type=int, default=0, metavar="US")
    p.add_argument("--depth", type=int, default=0)
    p.add_argument("--workload", choices=("fib", "afib"), default="fib")
    p.add_argument("--child", choices=("plain", "room", "full", "floor"), help=argparse.SUPPRESS)
    args = p.parse_args()
    global WORKLOAD
    WORKLOAD = args.workload
    if args.child:
        child(args.child, args.engine, args.cpu_interval, args.depth)
        return
    # fib's calls and the lambda's (and drive's)
    events = 2 * ROUNDS * (calls(FIB_N) + (2 if args.workload == "afib" else 1))
    plain, _ = instructions("plain", args)
    room, _ = instructions("room", args)
    full, full_out = instructions("full", args)
    floor, _ = instructions("floor", args)
    print(f"Python {sys.version.split()[0]}, {args.workload}, engine {args.engine}, "
          f"cpu-interval {args.cpu_interval} us, "
          f"{events:,} events, {full_out.strip()} with a full ring")
    print(f"instructions per event added to plain python: ring with room {(room - plain) / events:.1f}, "
          f"ring full {(full - plain) / events:.1f}")
    print(f"recording floor {(floor - plain) / events:.1f} per event added; full tracing / floor "
          f"{(room - plain) / (floor - plain):.2f}x (target <= 1.15)")
    print(f"instructions per call (2 events): plain {2 * plain / events:.1f}, ring with room "
          f"{2 * room / events:.1f}, ring full {2 * full / events:.1f}; full/room {full / room:.2f}x")


if __name__ == "__main__":
    main()
