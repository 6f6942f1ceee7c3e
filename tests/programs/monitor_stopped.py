"""Runs ~0.5 s (asleep, then computing) after saying "ready", while the test
keeps ulma's monitor stopped; prints its own run time (from its first line
to its last) as JSON."""

import time

t0 = time.perf_counter_ns()
import json  # noqa: E402
import sys  # noqa: E402


def work() -> None:
    time.sleep(0.3)
    end = time.perf_counter() + 0.2
    while time.perf_counter() < end:
        pass


print("ready", flush=True)
sys.stdin.readline()  # the test stopped the monitor
work()
print(json.dumps({"wall_ns": time.perf_counter_ns() - t0}), flush=True)
