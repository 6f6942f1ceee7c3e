"""A program that knows where its time goes: `hot` burns CPU (most of the run's self time),
`cold` next to nothing, `snooze` waits a little.  Runs until the file named by its first argument
exists (or 60 s pass), then prints how many rounds it made and exits 3."""

import os
import sys
import time


def hot(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def cold() -> int:
    return 1


def snooze() -> None:
    time.sleep(0.0005)


def main() -> int:
    stop = sys.argv[1] if len(sys.argv) > 1 else ""
    end = time.monotonic() + 60
    rounds = 0
    while time.monotonic() < end and not (stop and os.path.exists(stop)):
        hot(50_000)
        cold()
        snooze()
        rounds += 1
    print(f"rounds {rounds}")
    return 3


if __name__ == "__main__":
    sys.exit(main())
