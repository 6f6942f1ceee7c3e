"""For the live view: runs until SIGTERM or SIGINT (at most SECONDS, first argument, default 60).

hot() takes nearly all the time in few calls; spin() calls cold() often, each call cheap; main()
calls both.  Prints "ready" once a first round is done, and "bye" on SIGTERM."""

import signal
import sys
import time

stop = False


def hot() -> int:
    total = 0
    for i in range(200_000):
        total += i * i
    return total


def cold(x: int) -> int:
    return x + 1


def spin() -> int:
    total = 0
    for i in range(50):
        total += cold(i)
    return total


def on_term(signum: int, frame: object) -> None:
    global stop
    stop = True


def main() -> None:
    signal.signal(signal.SIGTERM, on_term)
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    deadline = time.monotonic() + seconds
    rounds = 0
    while not stop and time.monotonic() < deadline:
        hot()
        spin()
        rounds += 1
        if rounds == 1:
            print("ready", flush=True)
    print("bye", flush=True)


if __name__ == "__main__":
    main()
