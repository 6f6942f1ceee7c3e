"""An exception raised five frames down that nobody catches: traceback on stderr, exit code 1."""


class DeepFailure(Exception):
    pass


def level5(n: int) -> int:
    raise DeepFailure(f"deep failure at {n}")


def level4(n: int) -> int:
    return level5(n + 1) + 1


def level3(n: int) -> int:
    return level4(n + 1) + 1


def level2(n: int) -> int:
    return level3(n + 1) + 1


def level1(n: int) -> int:
    return level2(n + 1) + 1


def main() -> None:
    print("before the failure")
    level1(1)


if __name__ == "__main__":
    main()
