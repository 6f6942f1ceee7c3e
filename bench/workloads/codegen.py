"""A program that makes code: N distinct functions, each made by exec() in
batches and called once (argv[1], default 300 000).  What it stresses is
the profiler's memory per function and per-function start-up cost, not
calls.  Prints BENCH_SECONDS= and BENCH_CHECK= on stderr like the other
workloads."""

from __future__ import annotations

import sys
import time

BATCH = 1000


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    t0 = time.perf_counter()
    total = 0
    for start in range(0, n, BATCH):
        stop = min(n, start + BATCH)
        src = "".join(f"def gen_{i}(x):\n    return x + {i}\n" for i in range(start, stop))
        ns: dict[str, object] = {}
        exec(compile(src, f"<gen {start}>", "exec"), ns)
        for i in range(start, stop):
            total += ns[f"gen_{i}"](1)  # type: ignore[operator]
    seconds = time.perf_counter() - t0
    sys.stderr.write(f"BENCH_SECONDS={seconds:.6f}\nBENCH_CHECK={total}\n")


if __name__ == "__main__":
    main()
