"""Single-step's program: fib(3), whose calls and returns are known.

    stepped.py          main() at once
    stepped.py wait     main() once a line arrives on stdin
    stepped.py spin     fib(3) until Ctrl-C; its handler prints "interrupted"
    stepped.py threads  four threads run fib(10) until a line arrives on stdin ("started"
                        once they all started, "finished" as each ends); "done" at the end
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
    print("started", flush=True)
    sys.stdin.readline()
    stopping.set()
    for w in workers:
        w.join()
    print("done", flush=True)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "wait":
        sys.stdin.readline()
    {"spin": spin, "threads": threads}.get(mode, main)()
