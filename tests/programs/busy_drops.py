"""A busy phase of several hundred thousand events, then a quiet 300 ms sleep.

Prints how long the busy phase took, so a test can check that no function of the busy phase was
credited with more time than the phase lasted (e.g. the sleep, if a return was lost with a drop).
"""

import time

ROUNDS = 2_000


def leaf(i: int) -> int:
    return i + 1


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def busy() -> int:
    start = time.perf_counter_ns()
    total = 0
    for i in range(ROUNDS):
        total += fib(10) + leaf(i)
    elapsed = time.perf_counter_ns() - start
    print(f"busy_ns {elapsed}")
    return total


def rest() -> None:
    time.sleep(0.3)


def main() -> None:
    print(busy())
    rest()


if __name__ == "__main__":
    main()
