"""Runs until the file named by its argument exists, calling `tick` about every millisecond."""

import os
import sys
import time


def tick() -> None:
    time.sleep(0.001)


def main(stop: str) -> None:
    while not os.path.exists(stop):
        tick()


main(sys.argv[1])
