"""Under ulma (--ring-size 1M): 40 threads alive at once each fill their ring
(more events than it holds) and wait; the program reads how much memory the
session holds (through any descriptor of the session it has), lets the
threads end, then watches it until the rings' pages were given back, and
prints both figures."""

import os
import threading
import time

THREADS, CALLS = 40, 40_000


def leaf(n: int) -> int:
    return n


def body(start: threading.Barrier, filled: threading.Barrier, end: threading.Event) -> None:
    start.wait()
    for i in range(CALLS):
        leaf(i)
    filled.wait()
    end.wait()


def session_kib() -> int | None:
    """KiB of memory the session holds now, or None if this process has no descriptor of it."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            if "ulma-session" in os.readlink(f"/proc/self/fd/{fd}"):
                return os.stat(f"/proc/self/fd/{fd}").st_blocks // 2
        except OSError:
            continue
    return None


def main() -> None:
    start, filled, end = threading.Barrier(THREADS), threading.Barrier(THREADS + 1), threading.Event()
    threads = [threading.Thread(target=body, args=(start, filled, end)) for _ in range(THREADS)]
    for t in threads:
        t.start()
    filled.wait()
    peak = session_kib()
    end.set()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 30
    now = peak
    while now is not None and now > 4096 and time.monotonic() < deadline:
        time.sleep(0.05)
        now = session_kib()
    print(f"while the threads lived: {peak} KiB, after: {now} KiB")


if __name__ == "__main__":
    main()
