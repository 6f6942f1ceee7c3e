"""Single-step's program: fib(3), whose calls and returns are known."""


def fib(n: int) -> int:
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def main() -> None:
    print(fib(3), flush=True)


if __name__ == "__main__":
    main()
