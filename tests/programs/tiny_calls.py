"""A tiny function called a million times, timed unprofiled and profiled in
the same process, round after round (this machine's speed drifts between
runs, so two processes would not compare).  The profiled rounds start the
agent on an in-process session, as `ulma run` would (with its probe
calibration), and read the profile back.  Prints one JSON line per round."""

import json
import os
import sys
import time

from ulma import _core
from ulma.agent import AgentOptions, resolve_engine
from ulma.agent.bootstrap import start_agent
from ulma.monitor.session import Session

CALLS = 1_000_000


def tiny() -> int:
    s = 0
    for i in range(6):
        s += i
    return s


def empty() -> None:
    pass


def loop(f=tiny) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter_ns()
    for _ in range(CALLS):
        f()
    return (time.perf_counter_ns() - t0) / CALLS


def profiled(engine: str) -> dict[str, float]:
    session = Session(ring_bytes=64 << 20, max_threads=4)  # holds the whole run: no drain needed
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
        return {"calls": f.calls, "self_ns": f.self_ns / f.calls,
                "corrected_ns": (f.self_ns - f.self_overhead_ns) / f.calls, "probe_ns": profile.probe_ns,
                "dropped": profile.dropped}
    finally:
        session.close()


def main() -> None:
    engine = resolve_engine(sys.argv[1] if len(sys.argv) > 1 else "auto")
    loop()  # warm-up
    for _ in range(int(os.environ.get("ROUNDS", "7"))):
        # the unprofiled loop brackets the profiled one: a change of speed
        # during the round then hits both sides alike
        before, call = loop(), loop(empty)
        result = profiled(engine)
        plain = (before + loop()) / 2
        print(json.dumps({"plain_ns": plain, "empty_call_ns": call, **result}), flush=True)


if __name__ == "__main__":
    main()
