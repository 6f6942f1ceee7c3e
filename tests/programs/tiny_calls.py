"""A tiny function called CALLS times (a million by default), timed unprofiled and profiled in
the same process, round after round (this machine's speed drifts between
runs, so two processes would not compare).  The profiled rounds start the
agent on an in-process session, as `ulma run` would (with its probe
calibration), and read the profile back.  Prints one JSON line per round.

Unprofiled, each loop is timed in wall time and in the thread's CPU time
(what a busy machine's preemptions do not inflate); the same loop calling an
empty function gives what the loop and the call itself cost around the
callee's own frame, which ulma counts to the caller."""

import json
import os
import sys
import time

from ulma import _core
from ulma.agent import AgentOptions, resolve_engine
from ulma.agent.bootstrap import start_agent
from ulma.monitor.session import Session

CALLS = int(os.environ.get("CALLS", "1000000"))


def tiny() -> int:
    s = 0
    for i in range(6):
        s += i
    return s


def empty() -> None:
    pass


def timed_loop(f=tiny) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(wall, thread CPU) ns per iteration."""
    c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
    for _ in range(CALLS):
        f()
    t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
    return (t1 - t0) / CALLS, (c1 - c0) / CALLS


def loop(f=tiny) -> float:  # type: ignore[no-untyped-def]
    return timed_loop(f)[0]


def profiled(engine: str) -> dict[str, float]:
    session = Session(ring_bytes=max(8 << 20, CALLS * 64), max_threads=4)  # holds the whole run: no drain
    try:
        start_agent(session.fd, AgentOptions(engine), alone=True)
        try:
            loop()
        finally:
            _core.agent_stop()
        session.drain()
        session.close_all()
        profile = session.profile(wall_ns=1)
        (f,) = [f for f in profile.functions if f.name == "tiny"]
        (outer,) = [f for f in profile.functions if f.name == "loop"]
        # the loop's share of CPU in its time less overhead: tiny and the loop
        # take turns every few hundred ns, so a preemption falls in either in
        # proportion to its time, and tiny had this share too
        cpu_share = outer.cpu_ns / (outer.total_ns - outer.overhead_ns)
        return {"calls": f.calls, "self_ns": f.self_ns / f.calls,
                "corrected_ns": (f.self_ns - f.self_overhead_ns) / f.calls,
                "corrected_cpu_ns": (f.self_ns - f.self_overhead_ns) * cpu_share / f.calls,
                "split_cpu_ns": f.self_cpu_ns / f.calls, "loop_cpu_ns": outer.cpu_ns / f.calls,
                "probe_ns": profile.probe_ns, "dropped": profile.dropped}
    finally:
        session.close()


def main() -> None:
    engine = resolve_engine(sys.argv[1] if len(sys.argv) > 1 else "auto")
    loop()  # warm-up
    for _ in range(int(os.environ.get("ROUNDS", "7"))):
        # the unprofiled loop brackets the profiled one: a change of speed
        # during the round then hits both sides alike
        before, call = timed_loop(), timed_loop(empty)
        result = profiled(engine)
        after, call_after = timed_loop(), timed_loop(empty)
        print(json.dumps({"plain_ns": (before[0] + after[0]) / 2,
                          "empty_call_ns": (call[0] + call_after[0]) / 2,
                          "plain_cpu_ns": (before[1] + after[1]) / 2,
                          "empty_call_cpu_ns": (call[1] + call_after[1]) / 2, **result}), flush=True)


if __name__ == "__main__":
    main()
