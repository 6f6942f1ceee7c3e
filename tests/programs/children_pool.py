"""A multiprocessing.Pool whose workers make a known number of calls.

`children_pool.py METHOD`: a Pool of WORKERS processes started by METHOD (fork, spawn or
forkserver) maps `task` over TASKS items; each task calls `leaf` LEAF_CALLS times in a worker.
The parent calls `parent_leaf` PARENT_CALLS times.  Each worker waits in its initializer until
every worker has started (a barrier), so none is left without a task and killed by the pool's end
before it ran any: every worker forked is a worker followed.  It prints the ground truth for ulma's
counts:

    task <calls>
    leaf <calls>
    parent_leaf <calls>
"""

import multiprocessing
import multiprocessing.synchronize
import sys

WORKERS = 3
TASKS = 40
LEAF_CALLS = 250
PARENT_CALLS = 1_000


def leaf(n: int) -> int:
    return n + 1


def parent_leaf(n: int) -> int:
    return n + 1


def task(_item: int) -> int:
    n = 0
    for _ in range(LEAF_CALLS):
        n = leaf(n)
    return n


def all_started(barrier: "multiprocessing.synchronize.Barrier") -> None:
    barrier.wait(60)


def main() -> None:
    context = multiprocessing.get_context(sys.argv[1])
    barrier = context.Barrier(WORKERS)
    with context.Pool(WORKERS, initializer=all_started, initargs=(barrier,)) as pool:
        done = pool.map(task, range(TASKS), chunksize=1)
    n = 0
    for _ in range(PARENT_CALLS):
        n = parent_leaf(n)
    print(f"task {len(done)}")
    print(f"leaf {sum(done)}")
    print(f"parent_leaf {n}")


if __name__ == "__main__":
    main()
