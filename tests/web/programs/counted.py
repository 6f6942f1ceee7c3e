"""Calls each function a number of times it knows, each call long enough to be seen in a flame
graph and a timeline: alpha 7 times, beta 13, gamma 29 (from beta: twice per beta call, plus 3)."""

import time


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def alpha() -> None:
    spin(0.02)


def gamma() -> None:
    spin(0.004)


def beta() -> None:
    spin(0.005)
    gamma()
    gamma()


def main() -> None:
    for _ in range(7):
        alpha()
    for _ in range(13):
        beta()
    for _ in range(3):
        gamma()
    print("alpha 7 beta 13 gamma 29")


if __name__ == "__main__":
    main()
