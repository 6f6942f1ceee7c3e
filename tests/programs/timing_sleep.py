"""Known times: nap() sleeps 50 ms, ten times; main() also calls a recursive fib and a 100 ms CPU spin."""

import time

FIB_N = 18
SPIN_SECONDS = 0.1


def nap() -> None:
    time.sleep(0.05)


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def spin(seconds: float) -> int:
    deadline = time.perf_counter() + seconds
    rounds = 0
    while time.perf_counter() < deadline:
        rounds += 1
    return rounds


def main() -> None:
    for _ in range(10):
        nap()
    print(fib(FIB_N))
    print(spin(SPIN_SECONDS) > 0)


if __name__ == "__main__":
    main()
