"""The chosen package's functions: a method, a check, a small recursion."""


class Acc:
    def __init__(self) -> None:
        self.total = 0

    def add(self, x: int) -> None:
        self.total += x


def check(x: int) -> int:
    return x % 7


def depth(n: int) -> int:
    return 0 if n == 0 else 1 + depth(n - 1)


def chosen(acc: Acc, x: int) -> None:
    acc.add(x)
    check(x)
    if x % 50 == 0:
        depth(5)
