"""Recursion 10 000 frames deep, with the recursion limit raised to allow it."""

import sys

DEPTH = 10_000


def descend(n: int) -> int:
    if n == 0:
        return 0
    return descend(n - 1) + 1


def climb(n: int, acc: list[int]) -> None:
    acc.append(n)
    if n < DEPTH:
        climb(n + 1, acc)


def main() -> None:
    sys.setrecursionlimit(DEPTH + 2_000)
    print(descend(DEPTH))
    print(descend(DEPTH // 2))
    acc: list[int] = []
    climb(1, acc)
    print(len(acc), acc[-1])


if __name__ == "__main__":
    main()
