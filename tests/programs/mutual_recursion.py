"""Mutual recursion: two-function and three-function cycles, and a recursive closure."""

from collections.abc import Callable


def is_even(n: int) -> bool:
    return True if n == 0 else is_odd(n - 1)


def is_odd(n: int) -> bool:
    return False if n == 0 else is_even(n - 1)


def step_a(n: int) -> int:
    return 0 if n <= 0 else step_b(n - 1) + 1


def step_b(n: int) -> int:
    return 0 if n <= 0 else step_c(n - 1) + 2


def step_c(n: int) -> int:
    return 0 if n <= 0 else step_a(n - 1) + 3


def make_counter() -> Callable[[int], int]:
    def countdown(n: int) -> int:
        return n if n == 0 else countdown(n - 1)

    return countdown


def main() -> None:
    print([is_even(n) for n in (0, 1, 7, 100, 301)])
    print(sum(step_a(n) for n in range(0, 90, 3)))
    countdown = make_counter()
    print(countdown(250), countdown(3))


if __name__ == "__main__":
    main()
