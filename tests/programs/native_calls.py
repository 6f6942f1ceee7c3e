"""Calls into C functions with known counts, for --native-calls.  Prints, as
JSON under "truth", the thread CPU and wall ns that sleeps() and roots() took."""

import json
import math
import time

truth: dict[str, list[int]] = {}


def sleeps() -> None:
    cpu0, wall0 = time.thread_time_ns(), time.perf_counter_ns()
    for _ in range(4):
        time.sleep(0.05)
    truth["sleeps"] = [time.thread_time_ns() - cpu0, time.perf_counter_ns() - wall0]


def roots() -> float:
    cpu0, wall0 = time.thread_time_ns(), time.perf_counter_ns()
    result = sum(math.sqrt(i) for i in range(1000))
    truth["roots"] = [time.thread_time_ns() - cpu0, time.perf_counter_ns() - wall0]
    return result


def appends() -> list[int]:
    out: list[int] = []
    for i in range(500):
        out.append(i)
    return out


def main() -> None:
    sleeps()
    roots()
    appends()
    print(json.dumps({"truth": truth}))


if __name__ == "__main__":
    main()
