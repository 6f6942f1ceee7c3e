"""Computes a while (some 200 ms traced: a millisecond the kernel counts as
blocked -- a page read in, a GIL handed to the agent's thread and back -- is
not 5 % of it), then blocks in one long sleep: a live view taken during the
sleep must show the sleeper waiting, not computing."""

import sys
import time


def busy() -> int:
    return sum(i * i for i in range(2_000_000))


def sleeper() -> None:
    print("sleeping", flush=True)
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)


if __name__ == "__main__":
    busy()
    sleeper()
