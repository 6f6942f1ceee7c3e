"""Knows how each of its functions waited: `compute` only computes (the thread's voluntary context
switches, from /proc/thread-self/status, say whether it ever blocked: a wait for the CPU is an
involuntary one), `sleeps` blocks in time.sleep.  Prints, as JSON on its last line, per function:
its wall and CPU time (its own thread's clocks) and its voluntary switches."""

from __future__ import annotations

import json
import time


def voluntary() -> int:
    with open("/proc/thread-self/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise SystemExit("no voluntary_ctxt_switches in /proc/thread-self/status")


def compute() -> int:
    return sum(i * i for i in range(3_000_000))


def sleeps() -> None:
    time.sleep(0.3)


def main() -> None:
    facts = {}
    for fn in (compute, sleeps):
        v0, w0, c0 = voluntary(), time.perf_counter_ns(), time.thread_time_ns()
        fn()
        w1, c1, v1 = time.perf_counter_ns(), time.thread_time_ns(), voluntary()
        facts[fn.__name__] = {"wall_ns": w1 - w0, "cpu_ns": c1 - c0, "voluntary": v1 - v0}
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
