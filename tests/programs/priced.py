"""Two copies of one recursive function, run in turns for SECONDS (argv[1]):
`fib_traced`, traced, and `fib_plain`, which the test leaves out
(`--exclude fib_plain`: no callback fires for it, as for a function the dial
switched off).  Each call is timed in the thread's CPU time; what the traced calls took
beyond what as many untraced ones took is what tracing cost this program,
measured by the program itself.  Four untraced calls for one traced keep the whole run well under
100 % overhead.  Prints JSON: the sums of both (ns), their counts and the calls of one fib(N)."""

import json
import sys
import time
from collections.abc import Callable

N = 15


def fib_traced(n: int) -> int:
    return n if n < 2 else fib_traced(n - 1) + fib_traced(n - 2)


def fib_plain(n: int) -> int:
    return n if n < 2 else fib_plain(n - 1) + fib_plain(n - 2)


def timed(f: Callable[[int], int]) -> int:
    t0 = time.thread_time_ns()
    f(N)
    return time.thread_time_ns() - t0


def main() -> None:
    on: list[int] = []
    off: list[int] = []
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        off.append(timed(fib_plain))
        off.append(timed(fib_plain))
        on.append(timed(fib_traced))
        off.append(timed(fib_plain))
        off.append(timed(fib_plain))
    calls = 0

    def count(n: int) -> None:
        nonlocal calls
        calls += 1
        if n >= 2:
            count(n - 1)
            count(n - 2)

    count(N)
    print(json.dumps({"on_ns": sum(on), "on_n": len(on), "off_ns": sum(off), "off_n": len(off),
                      "calls": calls}))


if __name__ == "__main__":
    main()
