"""Ground truth for the four-way split on a busy machine: a function that
computes 300 ms of its own thread CPU (in many short calls, so the agent
reads the CPU clock often), one that only sleeps, one that does both.  Each
measures its own thread CPU time and wall time; they are printed as JSON."""

import json
import time

MS = 1_000_000
facts: dict[str, dict[str, int]] = {}


def step() -> int:
    x = 0
    for i in range(500):
        x += i * i % 7
    return x


def spin_cpu(ns: int) -> None:
    """Computes until this thread has used `ns` of CPU, however long that takes."""
    c0 = time.thread_time_ns()
    while time.thread_time_ns() - c0 < ns:
        step()


def measured(name: str, wall0: int, cpu0: int) -> None:
    facts[name] = {"cpu_ns": time.thread_time_ns() - cpu0, "wall_ns": time.perf_counter_ns() - wall0}


def computes() -> None:
    wall0, cpu0 = time.perf_counter_ns(), time.thread_time_ns()
    spin_cpu(300 * MS)
    measured("computes", wall0, cpu0)


def sleeps() -> None:
    wall0, cpu0 = time.perf_counter_ns(), time.thread_time_ns()
    for _ in range(4):
        time.sleep(0.05)
    measured("sleeps", wall0, cpu0)


def mixed() -> None:
    """About half and half on an idle machine: 5 x (20 ms of CPU, 20 ms asleep)."""
    wall0, cpu0 = time.perf_counter_ns(), time.thread_time_ns()
    for _ in range(5):
        spin_cpu(20 * MS)
        time.sleep(0.02)
    measured("mixed", wall0, cpu0)


def main() -> None:
    computes()
    sleeps()
    mixed()
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
