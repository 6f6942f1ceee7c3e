"""Writes nonsense over the ring layout fields of the ulma session header it
finds mapped in itself (ring count, size and stride, where the rings are), then
tries to truncate the session through any descriptor of it it has, and
calls `worker` a known number of times from a few threads.  The program may
write its own memory; the monitor must go on reading the session as it made
it.  Under plain python there is no session: it only calls."""

import contextlib
import ctypes
import os
import threading

CALLS, THREADS = 1000, 4


def scribble() -> bool:
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if "ulma-session" in line and int(fields[2], 16) == 0 and "w" in fields[1]:
                base = int(fields[0].split("-")[0], 16)
                ctypes.c_uint32.from_address(base + 16).value = 0xFFFFFFF0  # max_threads
                ctypes.c_uint64.from_address(base + 24).value = 1 << 40  # ring_events
                ctypes.c_uint64.from_address(base + 32).value = 12345  # ring_stride
                ctypes.c_uint64.from_address(base + 56).value = 1 << 45  # rings_offset
                return True
    return False


def truncate() -> None:
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if "ulma-session" in os.readlink(f"/proc/self/fd/{fd}"):
                os.ftruncate(int(fd), 0)


def worker(n: int) -> int:
    return n + 1


def body() -> None:
    for i in range(CALLS):
        worker(i)


def main() -> None:
    scribble()
    truncate()
    threads = [threading.Thread(target=body) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"worker ran {CALLS * THREADS} times")


if __name__ == "__main__":
    main()
