"""Keeps making objects while it runs: `grow` makes 20 Things every 10 ms and keeps them all,
`churn` makes 20 Bits every 10 ms and keeps none (instances: on every Python a block each,
where lists come from CPython's free lists).  Stops after ARG seconds (default 60)."""

from __future__ import annotations

import sys
import time


class Thing:
    pass


class Bit:
    pass


kept: list[Thing] = []


def grow() -> None:
    for _ in range(20):
        kept.append(Thing())


def churn() -> None:
    for _ in range(20):
        x = Bit()
        del x


def main(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        grow()
        churn()
        time.sleep(0.01)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0)
