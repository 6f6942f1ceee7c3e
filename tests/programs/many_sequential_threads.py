"""Starts threads one after another, each calling `worker` once and ending
before the next starts: a profiler must trace every one of them."""

import sys
import threading

done = 0


def worker() -> None:
    global done
    done += 1


def main() -> None:
    count = int(sys.argv[1])
    for _ in range(count):
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    print(f"worker ran {done} times")


if __name__ == "__main__":
    main()
