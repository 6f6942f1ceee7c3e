"""Computes a little, then blocks in one long sleep: a live view taken during
the sleep must show the sleeper waiting, not computing."""

import sys
import time


def busy() -> int:
    return sum(i * i for i in range(200_000))


def sleeper() -> None:
    print("sleeping", flush=True)
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)


if __name__ == "__main__":
    busy()
    sleeper()
