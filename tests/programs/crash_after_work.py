"""Calls work() 1001 times, then dies by SIGABRT before the interpreter can flush anything."""

import os


def work(i: int) -> int:
    return i * 2


def main() -> None:
    total = 0
    for i in range(1001):  # 1001: not a multiple of the writer's publishing batch
        total += work(i)
    print(total, flush=True)
    os.abort()


if __name__ == "__main__":
    main()
