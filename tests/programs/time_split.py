"""Ground truth for the four-way split: functions that only wait (a sleep, a
blocking pipe read, a blocking socket read, an Event), one that only computes,
one that alternates 50/50 by design, and one whose time is in an excluded
helper.  What each did is printed as JSON on stdout, measured in the program:
under "truth", each function's own thread CPU time and wall time, in ns."""

import json
import os
import socket
import threading
import time

MS = 0.001
facts: dict[str, object] = {}
truth: dict[str, list[int]] = {}  # function name -> [its thread's CPU ns, wall ns] over its call


def clocks() -> tuple[int, int]:
    return time.thread_time_ns(), time.perf_counter_ns()


def took(name: str, start: tuple[int, int]) -> None:
    cpu, wall = clocks()
    truth[name] = [cpu - start[0], wall - start[1]]


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def sleeps() -> None:
    start = clocks()
    for _ in range(4):
        time.sleep(50 * MS)
    took("sleeps", start)


def reads_pipe() -> None:
    start = clocks()
    r, w = os.pipe()
    threading.Timer(0.15, os.write, (w, b"x")).start()
    os.read(r, 1)  # blocks ~150 ms
    os.close(r)
    os.close(w)
    took("reads_pipe", start)


def reads_socket() -> None:
    start = clocks()
    a, b = socket.socketpair()
    threading.Timer(0.15, b.sendall, (b"x",)).start()
    a.recv(1)  # blocks ~150 ms
    a.close()
    b.close()
    took("reads_socket", start)


def waits_event() -> None:
    start = clocks()
    threading.Event().wait(0.15)
    took("waits_event", start)


def measured(name: str, wall0: float, cpu0: float, start: tuple[int, int]) -> None:
    """What the thread itself saw: its CPU time and wall time (a virtual
    machine's stolen time is in neither the CPU clock nor any wait)."""
    facts[f"{name}_cpu_s"] = time.thread_time() - cpu0
    facts[f"{name}_wall_s"] = time.perf_counter() - wall0
    took(name, start)


def computes() -> int:
    start = clocks()
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    x = 0
    for i in range(3_000_000):
        x += i * i % 7
    measured("computes", wall0, cpu0, start)
    return x


def alternates() -> None:
    """Half computing, half sleeping, in 20 ms steps."""
    start = clocks()
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    for _ in range(8):
        spin(20 * MS)
        time.sleep(20 * MS)
    measured("alternates", wall0, cpu0, start)


def excluded_helper() -> None:
    """Excluded by the test: its own time is unmeasured (a Python callee
    would still be traced, so the loop is inline)."""
    end = time.perf_counter() + 100 * MS
    while time.perf_counter() < end:
        pass


def traced_helper() -> None:
    start = clocks()
    end = time.perf_counter() + 50 * MS
    while time.perf_counter() < end:
        pass
    took("traced_helper", start)


def calls_excluded() -> None:
    t0 = time.perf_counter()
    excluded_helper()
    facts["excluded_helper_s"] = time.perf_counter() - t0
    traced_helper()


def main() -> None:
    sleeps()
    reads_pipe()
    reads_socket()
    waits_event()
    computes()
    alternates()
    calls_excluded()
    facts["truth"] = truth
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
