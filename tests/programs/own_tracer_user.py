"""A program that runs a ref tracer of its own (tests/programs/own_tracer.c, built next to it by
the test: its directory is the first argument).

    own_tracer_user.py DIR after   -- sets its tracer now (in front of ulma's, if any), makes
                                      1000 lists in `make_lists`, takes its tracer out; prints
                                      how many lists its tracer saw
    own_tracer_user.py DIR before STOPFILE -- (with an idle agent, `python -m ulma.agent`) sets its
                                      tracer, then makes 100 lists at a time in `make_lists` until
                                      STOPFILE exists; prints the rounds, and in how many its
                                      tracer missed a list
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
    rounds = missed = 0
    while not os.path.exists(stop):  # ulma attaches and detaches meanwhile
        before = own_tracer.count()
        made = make_lists(100)
        if own_tracer.count() - before != len(made) + 1:  # (its own tracer missed one)
            missed += 1
        rounds += 1
        time.sleep(0.002)
    print(f"rounds={rounds} missed={missed}", flush=True)


if __name__ == "__main__":
    main()
