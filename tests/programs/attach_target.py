"""A long-running program with an idle agent: `python -m ulma.agent attach_target.py STOPFILE`.

Calls tick() in a loop until STOPFILE exists, then prints how many ticks it made and exits with 3,
so a test can check that attaching and detaching changed neither its output nor its exit code.
"""

import os
import sys
import time


def tick(n: int) -> int:
    return n + 1


def main() -> None:
    stop = sys.argv[1]
    count = 0
    while not os.path.exists(stop):
        for _ in range(200):
            count = tick(count)
        time.sleep(0.001)
    print(f"ticks={count}")
    sys.exit(3)


if __name__ == "__main__":
    main()
