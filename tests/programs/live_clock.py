"""For the live view's clocks: runs until SIGTERM (at most SECONDS, first argument, default 60).

naps() sleeps 100 ms a call and computes nothing: almost all of its time is waiting.  burns()
computes for 20 ms of its own thread's CPU time a call.  main() calls both, a round at a time."""

import signal
import sys
import time

NAP_S = 0.1
BURN_CPU_S = 0.02
stop = False


def naps() -> None:
    time.sleep(NAP_S)


def burns() -> int:
    end = time.thread_time() + BURN_CPU_S
    x = 0
    while time.thread_time() < end:
        x += 1
    return x


def on_term(signum: int, frame: object) -> None:
    global stop
    stop = True


def main() -> None:
    signal.signal(signal.SIGTERM, on_term)
    deadline = time.monotonic() + (float(sys.argv[1]) if len(sys.argv) > 1 else 60.0)
    while not stop and time.monotonic() < deadline:
        naps()
        burns()


if __name__ == "__main__":
    main()
