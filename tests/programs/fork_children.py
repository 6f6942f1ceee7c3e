"""A parent that forks children while a background thread makes calls.

`fork_children.py [GOFILE]`: with GOFILE (attach mode), waits until GOFILE exists before doing
anything, so every counted call happens while a monitor is attached.

The parent forks ROUNDS x CHILDREN children; right after each fork it calls `leaf` LEAF_CALLS
times, while the child calls `child_leaf` CHILD_CALLS times and leaves by os._exit or by
sys.exit (alternately).  A background thread calls `bg_leaf` all along.  The parent prints what
it called, as the ground truth for ulma's counts, and how many children it forked:

    leaf <calls>
    bg_leaf <calls>
    forks <children>
"""

import os
import sys
import threading
import time
import warnings

ROUNDS = 5
CHILDREN = 6
LEAF_CALLS = 3_000
CHILD_CALLS = 3_000


def leaf(n: int) -> int:
    return n + 1


def bg_leaf(n: int) -> int:
    return n + 1


def child_leaf(n: int) -> int:
    return n + 1


def background(stop: threading.Event, made: list[int]) -> None:
    while not stop.is_set():
        n = made[0]
        for _ in range(100):
            n = bg_leaf(n)
        made[0] = n


def child(i: int) -> None:
    n = 0
    for _ in range(CHILD_CALLS):
        n = child_leaf(n)
    if i % 2:
        os._exit(0)
    sys.exit(0)


def main() -> None:
    # 3.12+ warns that forking a threaded process may deadlock the child; that is what we test
    warnings.simplefilter("ignore", DeprecationWarning)
    if len(sys.argv) > 1:
        while not os.path.exists(sys.argv[1]):
            time.sleep(0.005)
    stop = threading.Event()
    bg_made = [0]
    thread = threading.Thread(target=background, args=(stop, bg_made))
    thread.start()
    made = forks = 0
    for _ in range(ROUNDS):
        pids = []
        for i in range(CHILDREN):
            pid = os.fork()
            if pid == 0:
                child(i)
            forks += 1
            pids.append(pid)
            for _ in range(LEAF_CALLS):
                made = leaf(made)
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                print(f"child {pid} failed: {status}", file=sys.stderr)
                sys.exit(1)
    stop.set()
    thread.join()
    print(f"leaf {made}")
    print(f"bg_leaf {bg_made[0]}")
    print(f"forks {forks}")


if __name__ == "__main__":
    main()
