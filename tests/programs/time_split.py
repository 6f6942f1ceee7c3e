"""Ground truth for the four-way split: functions that only wait (a sleep, a
blocking pipe read, a blocking socket read, an Event), one that only computes,
one that alternates 50/50 by design, and one whose time is in an excluded
helper.  What each did is printed as JSON on stdout, measured in the program."""

import json
import os
import socket
import threading
import time

MS = 0.001
facts: dict[str, float] = {}


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def sleeps() -> None:
    for _ in range(4):
        time.sleep(50 * MS)


def reads_pipe() -> None:
    r, w = os.pipe()
    threading.Timer(0.15, os.write, (w, b"x")).start()
    os.read(r, 1)  # blocks ~150 ms
    os.close(r)
    os.close(w)


def reads_socket() -> None:
    a, b = socket.socketpair()
    threading.Timer(0.15, b.sendall, (b"x",)).start()
    a.recv(1)  # blocks ~150 ms
    a.close()
    b.close()


def waits_event() -> None:
    threading.Event().wait(0.15)


def measured(name: str, wall0: float, cpu0: float) -> None:
    """What the thread itself saw: its CPU time and wall time (a virtual
    machine's stolen time is in neither the CPU clock nor any wait)."""
    facts[f"{name}_cpu_s"] = time.thread_time() - cpu0
    facts[f"{name}_wall_s"] = time.perf_counter() - wall0


def computes() -> int:
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    x = 0
    for i in range(3_000_000):
        x += i * i % 7
    measured("computes", wall0, cpu0)
    return x


def alternates() -> None:
    """Half computing, half sleeping, in 20 ms steps."""
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    for _ in range(8):
        spin(20 * MS)
        time.sleep(20 * MS)
    measured("alternates", wall0, cpu0)


def excluded_helper() -> None:
    """Excluded by the test: its own time is unmeasured (a Python callee
    would still be traced, so the loop is inline)."""
    end = time.perf_counter() + 100 * MS
    while time.perf_counter() < end:
        pass


def traced_helper() -> None:
    end = time.perf_counter() + 50 * MS
    while time.perf_counter() < end:
        pass


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
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
