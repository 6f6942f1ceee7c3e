"""A program that makes code with exec(): `distinct` functions, each its own
definition (gen_<i> in "<made b>", i % 3 + 1 calls each), and `same` code
objects all made from one identical definition (def same in "<same>", one
call each).  Optional worker threads, each calling the last distinct
function once.  Prints what it did as JSON: the ground truth."""

from __future__ import annotations

import json
import sys
import threading

BATCH = 500


def make_distinct(n: int) -> dict[str, int]:
    calls: dict[str, int] = {}
    last = None
    for start in range(0, n, BATCH):
        stop = min(n, start + BATCH)
        src = "".join(f"def gen_{i}(x):\n    return x + {i}\n" for i in range(start, stop))
        ns: dict[str, object] = {}
        exec(compile(src, f"<made {start}>", "exec"), ns)
        for i in range(start, stop):
            fn = ns[f"gen_{i}"]
            for _ in range(i % 3 + 1):
                fn(i)  # type: ignore[operator]
            calls[f"gen_{i}"] = i % 3 + 1
            last = fn
    global LAST
    LAST = last
    return calls


LAST: object = None


def make_same(n: int) -> int:
    for _ in range(n):
        ns: dict[str, object] = {}
        exec(compile("def same(x):\n    return x\n", "<same>", "exec"), ns)
        ns["same"](1)  # type: ignore[operator]
    return n


def main() -> None:
    distinct, same, threads = (int(a) for a in sys.argv[1:4])
    calls = make_distinct(distinct)
    calls["same"] = make_same(same)
    workers = [threading.Thread(target=LAST, args=(0,)) for _ in range(threads)]  # type: ignore[arg-type]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if threads and distinct:
        calls[f"gen_{distinct - 1}"] += threads
    json.dump(calls, sys.stdout)


main()
