"""Makes 100 000 calls (enough events for the trace writer to write a chunk),
says "ready", then waits for a line on stdin: the test kills the monitor
meanwhile, so the trace is cut short."""

import sys


def leaf(i: int) -> int:
    return i + 1


def main() -> None:
    total = 0
    for i in range(100_000):
        total += leaf(i)
    print("ready", flush=True)
    sys.stdin.readline()


if __name__ == "__main__":
    main()
