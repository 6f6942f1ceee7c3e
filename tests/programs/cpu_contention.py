"""Two CPU-bound threads on one core: each is often runnable but not
scheduled.  The work (sha256 of 1 MiB) releases the GIL, so the threads
really compete for the core, not for the GIL.  Each thread measures its own
CPU time (time.thread_time) and wall time; they are printed as JSON, and
under "truth" as the worker's CPU and wall ns summed over both threads."""

import hashlib
import json
import os
import threading
import time

DATA = b"u" * (1 << 20)
ROUNDS = 160
measured: list[tuple[float, float]] = []
lock = threading.Lock()


def worker() -> None:
    w0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(ROUNDS):
        hashlib.sha256(DATA).digest()
    wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
    with lock:
        measured.append((cpu, wall))


def main() -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu_s, wall_s = sum(c for c, _ in measured), sum(w for _, w in measured)
    print(json.dumps({"cpu_s": cpu_s, "wall_s": wall_s,
                      "truth": {"worker": [round(cpu_s * 1e9), round(wall_s * 1e9)]}}))


if __name__ == "__main__":
    main()
