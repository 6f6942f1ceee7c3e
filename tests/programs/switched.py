"""Calls hot() in rounds the test starts, so the test knows how many calls
were made while hot was switched on and while it was off: each line "N" on
stdin makes N calls (through caller) and prints "made N"; "q" ends."""

import sys


def hot(x: int) -> int:
    return x + 1


def caller(n: int) -> int:
    s = 0
    for _ in range(n):
        s = hot(s)
    return s


def main() -> None:
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "q":
            break
        n = int(cmd)
        print(f"made {caller(n)}", flush=True)


if __name__ == "__main__":
    main()
