"""Forks again and again while many short threads are ending.

A profiled thread's end runs ulma's clean-up (without the GIL) while the main thread forks; a
child must never wait for something that thread held at the moment of the fork.

`fork_thread_exits.py FORKS`: each child leaves at once by os._exit(0).  The parent waits for
each child at most CHILD_TIMEOUT seconds; a child still alive then is killed, counted as hung,
and the program exits with 1.  Prints "forks <n> hung <m>".
"""

import _thread
import os
import select
import signal
import sys
import threading
import warnings

SPAWNERS = 4
BATCH = 16
CHILD_TIMEOUT = 10.0


def work(n: int) -> int:
    return n + 1


def short_thread(done: threading.Semaphore) -> None:
    work(0)
    done.release()


def spawner(stop: threading.Event) -> None:
    """Starts short threads, at most BATCH alive at once (the low-level API: many per second)."""
    while not stop.is_set():
        done = threading.Semaphore(0)
        for _ in range(BATCH):
            _thread.start_new_thread(short_thread, (done,))
        for _ in range(BATCH):
            done.acquire()


def wait_child(pid: int) -> bool:
    """True if the child ended in time (and cleanly)."""
    fd = os.pidfd_open(pid)
    try:
        ended, _, _ = select.select([fd], [], [], CHILD_TIMEOUT)
    finally:
        os.close(fd)
    if not ended:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return bool(ended) and os.waitstatus_to_exitcode(status) == 0


def main() -> None:
    warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: forking a threaded process
    forks = int(sys.argv[1])
    stop = threading.Event()
    spawners = [threading.Thread(target=spawner, args=(stop,)) for _ in range(SPAWNERS)]
    for t in spawners:
        t.start()
    hung = 0
    for _ in range(forks):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        if not wait_child(pid):
            hung += 1
            if hung == 3:
                break  # enough to tell; do not spend CHILD_TIMEOUT on every fork
    stop.set()
    for t in spawners:
        t.join()
    print(f"forks {forks} hung {hung}")
    sys.exit(1 if hung else 0)


if __name__ == "__main__":
    main()
