"""Functions of the chosen package: plain calls, a method, recursion, an exception."""


class Acc:
    def __init__(self) -> None:
        self.total = 0

    def add(self, x: int) -> None:
        self.total += x


def depth(n: int) -> int:
    return 0 if n == 0 else 1 + depth(n - 1)


def risky(x: int) -> int:
    if x % 7 == 0:
        raise ValueError(x)
    return x


def chosen(acc: Acc, x: int) -> None:
    acc.add(x)
    try:
        risky(x)
    except ValueError:
        acc.add(0)
    if x % 50 == 0:
        depth(5)
