"""Forked children that each make a known number of calls and leave, some by os._exit (no
atexit, nothing flushed), some by sys.exit, one by a signal, one by exec'ing `true`.

It prints the ground truth for ulma's counts and the children's pids:

    child_leaf <calls made in children>
    parent_leaf <calls made in the parent>
    pids <pid> <pid> ...
"""

import os
import signal
import sys

CHILDREN = 6
CHILD_CALLS = 2_000
PARENT_CALLS = 500


def child_leaf(n: int) -> int:
    return n + 1


def parent_leaf(n: int) -> int:
    return n + 1


def child(i: int) -> None:
    n = 0
    for _ in range(CHILD_CALLS):
        n = child_leaf(n)
    if i == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    if i % 2:
        os._exit(0)
    sys.exit(0)


def main() -> None:
    pids = []
    for i in range(CHILDREN):
        pid = os.fork()
        if pid == 0:
            child(i)
        pids.append(pid)
    n = 0
    for _ in range(PARENT_CALLS):
        n = parent_leaf(n)
    for pid in pids:
        os.waitpid(pid, 0)
    print(f"child_leaf {CHILDREN * CHILD_CALLS}")
    print(f"parent_leaf {n}")
    print("pids " + " ".join(map(str, pids)))


if __name__ == "__main__":
    main()
