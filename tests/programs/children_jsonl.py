"""A forked child that makes its calls in batches over about 1.5 s (several --jsonl
lines while it runs), while the parent waits for it and then makes its own.

It prints the ground truth: `child_leaf <calls>`, `parent_leaf <calls>`, `child <pid>`."""

import os
import time

BATCHES = 10
BATCH = 1_000
PARENT_CALLS = 500


def child_leaf(n: int) -> int:
    return n + 1


def parent_leaf(n: int) -> int:
    return n + 1


def child() -> None:
    n = 0
    for _ in range(BATCHES):
        for _ in range(BATCH):
            n = child_leaf(n)
        time.sleep(0.15)
    os._exit(0 if n == BATCHES * BATCH else 1)


def main() -> None:
    pid = os.fork()
    if pid == 0:
        child()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    n = 0
    for _ in range(PARENT_CALLS):
        n = parent_leaf(n)
    print(f"child_leaf {BATCHES * BATCH}")
    print(f"parent_leaf {n}")
    print(f"child {pid}")


if __name__ == "__main__":
    main()
