"""A program that knows its call counts: `work` WORK times and `other` OTHER times, over about two
seconds, so its history spans several seconds.  Each `work` makes an Order and keeps every tenth
(WORK Orders made, WORK // 10 live at the end: for --objects).  With the argument `slow`, `other` sleeps three
times as long per call (and `work` as before): what `ulma history compare` must flag."""

import sys
import time

WORK = 1000
OTHER = 400


class Order:
    pass


kept: list[Order] = []


def work(i: int) -> int:
    order = Order()
    if i % 10 == 0:
        kept.append(order)
    time.sleep(0.001)
    return i * 2


def other(slow: bool) -> None:
    time.sleep(0.003 if slow else 0.001)


def main() -> None:
    slow = sys.argv[1:] == ["slow"]
    total = 0
    for i in range(WORK):
        total += work(i)
        if i % (WORK // OTHER) == 0 and i // (WORK // OTHER) < OTHER:
            other(slow)
    print(total)


main()
