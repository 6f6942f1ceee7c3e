"""Generators: pipelines, `yield from` delegation, send(), throw(), return values, generator expressions."""

from collections.abc import Generator, Iterable, Iterator


def numbers(limit: int) -> Iterator[int]:
    for i in range(limit):  # noqa: UP028
        yield i


def squares(values: Iterable[int]) -> Iterator[int]:
    for value in values:
        yield value * value


def inner(n: int) -> Generator[int, None, str]:
    for i in range(n):  # noqa: UP028
        yield i
    return f"inner done {n}"


def middle(n: int) -> Generator[int, None, str]:
    result = yield from inner(n)
    yield -1
    return result.upper()


def outer(n: int) -> Generator[int, None, None]:
    message = yield from middle(n)
    yield len(message)


def accumulator() -> Generator[int, int, None]:
    total = 0
    while True:
        value = yield total
        total += value


def resilient() -> Generator[str, None, None]:
    for i in range(4):
        try:
            yield f"item {i}"
        except ValueError:
            yield "recovered"


def main() -> None:
    print(sum(squares(numbers(50))))
    print(list(outer(5)))
    acc = accumulator()
    next(acc)
    for value in range(10):
        acc.send(value)
    print(acc.send(0))
    acc.close()
    gen = resilient()
    seen = [next(gen), gen.throw(ValueError("x")), next(gen), next(gen)]
    print(seen, list(gen))
    print(sum(x * 2 for x in numbers(20) if x % 3))
    print(list(zip(numbers(3), squares(numbers(5)), strict=False)))


if __name__ == "__main__":
    main()
