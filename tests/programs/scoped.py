"""A program whose package `scopedpkg` makes about a tenth of the calls
(ulma run --only scopedpkg / --exclude): the rest are calls of its own."""

from scopedpkg.work import Acc, chosen  # type: ignore[import-not-found]


def other(x: int) -> int:
    return x * 2


def busy(x: int) -> int:
    return other(x) + other(x + 1)


def main() -> None:
    acc = Acc()
    s = 0
    for i in range(20_000):
        for j in range(16):
            s += busy(i + j) if j % 3 == 0 else other(j)
        chosen(acc, i)
    print(acc.total, s)


if __name__ == "__main__":
    main()
