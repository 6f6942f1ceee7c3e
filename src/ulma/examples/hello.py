"""A small program to try ulma on: recursion, a generator, JSON, a sleep, threads.

    ulma run -m ulma.examples.hello
"""

import json
import threading
import time


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def squares(n: int):  # type: ignore[no-untyped-def]
    for i in range(n):
        yield i * i


def encode_decode(rounds: int) -> int:
    total = 0
    for i in range(rounds):
        total += len(json.loads(json.dumps({"i": i, "items": list(range(20))}))["items"])
    return total


def nap() -> None:
    time.sleep(0.05)


def worker() -> None:
    fib(18)


def main() -> None:
    print("fib(22) =", fib(22))
    print("sum of squares =", sum(squares(10_000)))
    print("json items =", encode_decode(2_000))
    for _ in range(4):
        nap()
    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
