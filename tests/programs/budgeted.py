"""A deterministic program for the dial (`ulma run --budget`): leaf() is
called very often and is short, mid() and slow() rarely and long.  leaf()
notes the CLOCK_MONOTONIC time of each of its calls; with a file name as
argument they are written there (native int64), so a test can count the
calls made before any moment.  Prints how many calls each function made."""

import sys
import time
from array import array

ROUNDS = 500
stamps = array("q")


def leaf(x: int) -> int:
    stamps.append(time.monotonic_ns())
    return x + 1


def mid(n: int) -> int:
    s = 0
    for _ in range(n):
        s = leaf(s)
    return s


def slow() -> float:
    t = 0.0
    for i in range(3000):
        t += i * 0.5
    return t


def main() -> None:
    total = 0
    for _ in range(ROUNDS):
        total += mid(2000)
        slow()
    print(f"leaf {len(stamps)} mid {ROUNDS} slow {ROUNDS} total {total}")
    if len(sys.argv) > 1:
        with open(sys.argv[1], "wb") as f:
            stamps.tofile(f)


if __name__ == "__main__":
    main()
