"""Calls into C functions with known counts, for --native-calls."""

import math
import time


def sleeps() -> None:
    for _ in range(4):
        time.sleep(0.05)


def roots() -> float:
    return sum(math.sqrt(i) for i in range(1000))


def appends() -> list[int]:
    out: list[int] = []
    for i in range(500):
        out.append(i)
    return out


def main() -> None:
    sleeps()
    roots()
    appends()


if __name__ == "__main__":
    main()
