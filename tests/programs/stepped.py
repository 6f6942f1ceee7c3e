"""Single-step's program: fib(3), whose calls and returns are known.

    stepped.py          main() at once
    stepped.py wait     main() once a line arrives on stdin
    stepped.py spin     fib(3) until Ctrl-C; its handler prints "interrupted"
    stepped.py threads  four threads run fib(12) 30 times each; "done" at the end
"""

import sys
import threading


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


def work() -> None:
    for _ in range(30):
        fib(12)


def threads() -> None:
    print("started", flush=True)
    workers = [threading.Thread(target=work) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print("done", flush=True)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "wait":
        sys.stdin.readline()
    {"spin": spin, "threads": threads}.get(mode, main)()
