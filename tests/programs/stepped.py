"""Single-step's program: fib(3), whose calls and returns are known.

    stepped.py          main() at once
    stepped.py wait     main() once a line arrives on stdin
    stepped.py spin     fib(3) until Ctrl-C; its handler prints "interrupted"
    stepped.py threads  four threads run fib(10) until a line arrives on stdin ("started"
                        once they all started, "finished" as each ends); "done" at the end;
                        Ctrl-C instead of the line prints "interrupted" and ends them too
"""

import os
import sys


def fib(n: int) -> int:
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def main() -> None:
    print(fib(3), flush=True)


def spin() -> None:
    print("spinning", flush=True)
    try:
        while True:
            fib(3)
    except KeyboardInterrupt:
        print("interrupted", flush=True)


def threads() -> None:
    import threading  # here: main() imports nothing (ulma run --step steps through it from the start)

    stopping = threading.Event()

    def work() -> None:
        while not stopping.is_set():
            fib(10)
        os.write(1, b"finished\n")  # one write: the threads print at once

    workers = [threading.Thread(target=work) for _ in range(4)]
    for w in workers:
        w.start()
    # A Ctrl-C that the kernel hands to a worker, or that comes just before the
    # main thread blocks in read(), would never wake it (python's own limit):
    # the main thread waits in select() on stdin and a signal wakeup pipe.
    import select
    import signal

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    try:  # (the Ctrl-C may come while print still waits for the GIL, its line written)
        print("started", flush=True)
        while sys.stdin.fileno() not in select.select([sys.stdin.fileno(), wake_r], [], [])[0]:
            os.read(wake_r, 64)  # a signal: its handler runs now (KeyboardInterrupt for Ctrl-C)
        sys.stdin.readline()
    except KeyboardInterrupt:  # Ctrl-C: the threads are told to end, as a line tells them
        print("interrupted", flush=True)
    stopping.set()
    for w in workers:
        w.join()
    print("done", flush=True)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "wait":
        sys.stdin.readline()
    {"spin": spin, "threads": threads}.get(mode, main)()
