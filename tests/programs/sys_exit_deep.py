"""sys.exit(3) called from 50 frames down; a `finally` on the way out still runs."""

import sys


def cleanup() -> None:
    print("cleanup")


def finish() -> None:
    cleanup()
    sys.exit(3)


def dive(n: int) -> int:
    if n == 0:
        finish()
    return dive(n - 1) + 1


def main() -> None:
    try:
        dive(50)
    finally:
        print("finally ran")


if __name__ == "__main__":
    main()
