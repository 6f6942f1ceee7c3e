"""A program with an idle agent and 20 threads that call, sleep and call
again until STOPFILE exists (so each reads its run delay after a wait):
`python -m ulma.agent attach_threads_target.py STOPFILE`.  Prints how many
ticks all threads made and exits with 3."""

import os
import sys
import threading
import time

THREADS = 20
counts = [0] * THREADS


def tick(n: int) -> int:
    return n + 1


def body(index: int, stop: str) -> None:
    while not os.path.exists(stop):
        for _ in range(50):
            counts[index] = tick(counts[index])
        time.sleep(0.002)


def main() -> None:
    stop = sys.argv[1]
    threads = [threading.Thread(target=body, args=(i, stop)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"ticks={sum(counts)}")
    sys.exit(3)


if __name__ == "__main__":
    main()
