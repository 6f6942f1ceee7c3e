"""What CPU readings cost, measured in one process: each round runs a workload
with the agent on an in-process session, once with readings (every 100 us,
the default) and once without, in alternating order, so the two sides of a
pair see the same machine.  Run by the interpreter being measured:

    python bench/ulma_bench/readings.py fib mix

prints one JSON line: {workload: {"ratios": [...], "readings": n, "cost_ns": per reading}}.
The measured cost per reading comes from the replay (the gap a reading leaves
in the stream), so the line also says what share of the run readings took.
"""

import contextlib
import io
import json
import re
import runpy
import statistics
import sys
from pathlib import Path

from ulma import _core
from ulma.agent import DEFAULT_CPU_INTERVAL_US, AgentOptions, default_engine
from ulma.agent.bootstrap import start_agent
from ulma.monitor.session import Session

WORKLOADS = Path(__file__).resolve().parent.parent / "workloads"
ROUNDS = 5
PROBE_TICKS = 7  # index of the measured probe (reading) time in a split snapshot row


def one_run(workload: str, interval_us: int) -> tuple[float, int, float]:
    """(the workload's own seconds, readings taken, ns they cost by the replay)."""
    session = Session(ring_bytes=512 << 20, max_threads=16)  # holds a whole run: drained afterwards
    err = io.StringIO()
    try:
        start_agent(session.fd, AgentOptions(default_engine(), cpu_interval_us=interval_us), alone=True)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                runpy.run_path(str(WORKLOADS / f"{workload}.py"), run_name="__main__")
        finally:
            _core.agent_stop()
        session.drain()
        session.close_all()
        rows, _, _, _ = session.core.snapshot(split=True)
        readings = sum(t["cpu_readings"] for t in session.core.threads())
        cost = sum(row[PROBE_TICKS] for row in rows) * session.ns_per_tick()
    finally:
        session.close()
    found = re.search(r"BENCH_SECONDS=([\d.]+)", err.getvalue())
    if not found:
        raise SystemExit(f"{workload} printed no BENCH_SECONDS")
    return float(found.group(1)), readings, cost


def measure(workload: str) -> dict[str, object]:
    ratios, readings, costs, shares = [], [], [], []
    for i in range(ROUNDS):
        order = (DEFAULT_CPU_INTERVAL_US, 0) if i % 2 else (0, DEFAULT_CPU_INTERVAL_US)
        runs = {interval: one_run(workload, interval) for interval in order}
        (seconds, count, cost), without = runs[DEFAULT_CPU_INTERVAL_US], runs[0]
        ratios.append(seconds / without[0])
        readings.append(count)
        costs.append(cost / max(count, 1))
        shares.append(cost / 1e9 / seconds)
    return {"ratios": ratios, "readings": statistics.median(readings), "cost_ns": statistics.median(costs),
            "share": statistics.median(shares)}


if __name__ == "__main__":
    print(json.dumps({name: measure(name) for name in sys.argv[1:]}))
