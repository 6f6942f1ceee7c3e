"""Exceptions raised deep down and caught several frames up, re-raised, chained and cleaned up."""

import contextlib


class AppError(Exception):
    pass


def level4(n: int) -> int:
    if n % 3 == 0:
        raise AppError(f"bad {n}")
    return n


def level3(n: int) -> int:
    return level4(n) * 2


def level2(n: int) -> int:
    try:
        return level3(n) + 1
    except KeyError:  # never matches: AppError passes through
        return -1


def level1(n: int) -> int:
    return level2(n) - 1


def handle(error: AppError) -> int:
    return len(str(error))


def top(n: int) -> int:
    try:
        return level1(n)
    except AppError as error:
        return -handle(error)


def convert() -> None:
    try:
        level3(0)
    except AppError as error:
        raise ValueError("converted") from error


def note(log: list[str]) -> None:
    log.append("finally")


def with_finally(log: list[str]) -> int:
    try:
        return level3(3)
    finally:
        note(log)


def parse(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return fallback(text)


def fallback(text: str) -> int:
    return len(text)


def main() -> None:
    print([top(n) for n in range(30)])
    caught = 0
    for _ in range(5):
        try:
            convert()
        except ValueError as error:
            caught += isinstance(error.__cause__, AppError)
    print("converted", caught)
    log: list[str] = []
    for _ in range(4):
        with contextlib.suppress(AppError):
            with_finally(log)
    print(log)
    print([parse(t) for t in ("12", "x", "7", "abc")])


if __name__ == "__main__":
    main()
