"""For X (a module switched off): early() is called until the file GO exists, then later(), which
the monitor has not seen before, until the file STOP exists.  Prints how many calls each got.

    module_phases.py GO STOP
"""

import os
import sys
import time


def early() -> int:
    return 1


def later() -> int:
    return 1


def main() -> None:
    go, stop = sys.argv[1], sys.argv[2]
    n_early = n_later = 0
    while not os.path.exists(go):
        for _ in range(100):
            n_early += early()
        time.sleep(0.001)
    while not os.path.exists(stop):
        for _ in range(100):
            n_later += later()
        time.sleep(0.001)
    print(f"early={n_early} later={n_later}", flush=True)


if __name__ == "__main__":
    main()
