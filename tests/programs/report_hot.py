"""One function, hot(), takes nearly all the time; cold() is called often but costs little."""


def hot() -> int:
    total = 0
    for i in range(3_000_000):
        total += i * i
    return total


def cold(x: int) -> int:
    return x + 1


def main() -> None:
    print(hot() % 7)
    print(sum(cold(i) for i in range(100)))


if __name__ == "__main__":
    main()
