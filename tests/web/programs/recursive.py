"""Recursion under one caller: main calls fib(16) three times (fib calls itself 4,767 times each)."""


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def main() -> None:
    for _ in range(3):
        fib(16)


if __name__ == "__main__":
    main()
