"""A program that knows where its time goes: `hot` burns CPU, `cold` little, `snooze` waits.
Runs for the seconds given (default 3), then prints how many calls it made and exits 3."""

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
    time.sleep(0.002)


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    end = time.monotonic() + seconds
    calls = 0
    while time.monotonic() < end:
        hot(20000)
        cold()
        snooze()
        calls += 1
    print(f"rounds {calls}")
    return 3


if __name__ == "__main__":
    sys.exit(main())
