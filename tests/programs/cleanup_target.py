"""A program for the clean-up tests.

Usage: cleanup_target.py MODE   with MODE one of
  normal  do some work and exit 0
  abort   do some work, then os.abort()
  wait    print "ready", then work and sleep in a loop for up to 60 s (to be interrupted or killed)
"""

import os
import sys
import time


def spin(n: int) -> int:
    return sum(i * i for i in range(n))


def main() -> None:
    mode = sys.argv[1]
    print(spin(10_000))
    if mode == "abort":
        sys.stdout.flush()
        os.abort()
    if mode == "wait":
        print("ready", flush=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            spin(1_000)
            time.sleep(0.01)


if __name__ == "__main__":
    main()
