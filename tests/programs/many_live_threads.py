"""Starts many threads that are all alive at once (they wait on a barrier
after their first call), each calling `worker` a known number of times."""

import sys
import threading

calls = 0
lock = threading.Lock()


def worker() -> None:
    global calls
    with lock:
        calls += 1


def body(barrier: threading.Barrier, per_thread: int) -> None:
    worker()
    barrier.wait()  # every thread is alive here at the same time
    for _ in range(per_thread - 1):
        worker()


def main() -> None:
    count, per_thread = int(sys.argv[1]), int(sys.argv[2])
    threading.stack_size(256 * 1024)
    barrier = threading.Barrier(count)
    threads = [threading.Thread(target=body, args=(barrier, per_thread)) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"worker ran {calls} times in {count} threads")


if __name__ == "__main__":
    main()
