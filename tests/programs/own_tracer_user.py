"""A program that runs a ref tracer of its own (tests/programs/own_tracer.c, built next to it by
the test: its directory is the first argument).

    own_tracer_user.py DIR after   -- sets its tracer now (in front of ulma's, if any), makes
                                      1000 lists in `make_lists`, takes its tracer out; prints
                                      how many lists its tracer saw
    own_tracer_user.py DIR before STOPFILE -- (with an idle agent, `python -m ulma.agent`) sets its
                                      tracer, waits until another is set in front of it (ulma
                                      attached with --objects), makes 1000 lists; prints the count
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, sys.argv[1])
import own_tracer  # type: ignore[import-not-found]


def make_lists(n: int) -> list[list[int]]:
    return [[i] for i in range(n)]


def main() -> None:
    if sys.argv[2] == "after":
        own_tracer.on()
        make_lists(1000)
        print(f"lists={own_tracer.off()}")
        return
    stop = sys.argv[3]
    own_tracer.on()
    while own_tracer.in_front():
        if os.path.exists(stop):
            sys.exit("never attached")
        time.sleep(0.005)
    before = own_tracer.count()
    make_lists(1000)
    print(f"lists={own_tracer.count() - before}", flush=True)
    while not os.path.exists(stop):
        time.sleep(0.01)


if __name__ == "__main__":
    main()
