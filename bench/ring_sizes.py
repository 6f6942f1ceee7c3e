"""How many events a ring of each size loses under a burst: the figure behind --ring-size's minimum.

    python bench/ring_sizes.py [--calls N] [--sizes 64K,256K,1M,8M] [--rounds R]

Each size runs, R times, `ulma run` (without CPU readings) over a program making N calls to an empty
function as fast as it can -- the fastest a thread can write events -- and reads the JSON report.
Prints, per ring size, the median share of events dropped and the median run time, side by side.
Sizes below the minimum go through the tests' hidden --test-ring-size.  The minimum
(_core.LIMITS["MIN_RING_BYTES"], records.h) is meant to be the smallest size that keeps up with such
a burst while the monitor waits between drains.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from ulma import _core
from ulma.cli.errors import parse_size

PROGRAM = """\
def leaf(i):
    return i


def burst(n):
    for i in range(n):
        leaf(i)


burst({calls})
"""


def one_run(program: str, size: int, out: str) -> tuple[float, float]:
    """(share of events dropped, seconds) of one ulma run with this ring size."""
    option = "--ring-size" if size >= _core.LIMITS["MIN_RING_BYTES"] else "--test-ring-size"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ulma", "run", "--no-live", "--no-report", "--cpu-interval", "0",
                    option, str(size), "--json", out, program], check=True)
    seconds = time.perf_counter() - start
    with open(out) as f:
        report = json.load(f)
    return report["dropped"] / max(report["events"] + report["dropped"], 1), seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=1_000_000)
    p.add_argument("--sizes", default="1K,64K,256K,1M,8M")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        program = os.path.join(tmp, "burst.py")
        with open(program, "w") as f:
            f.write(PROGRAM.format(calls=args.calls))
        results: dict[int, list[tuple[float, float]]] = {s: [] for s in sizes}
        for _ in range(args.rounds):
            for size in sizes:  # rotating: each round runs every size once
                results[size].append(one_run(program, size, os.path.join(tmp, "r.json")))
    minimum = _core.LIMITS["MIN_RING_BYTES"]
    print(f"{args.calls:,} empty calls, {args.rounds} rounds, medians; minimum --ring-size {minimum >> 10}K")
    print(f"{'ring':>8} {'dropped':>8} {'run s':>7}")
    for size in sizes:
        dropped = statistics.median(d for d, _ in results[size])
        seconds = statistics.median(s for _, s in results[size])
        mark = "  (below the minimum)" if size < minimum else ""
        print(f"{size >> 10:>7}K {100 * dropped:>7.1f}% {seconds:>7.2f}{mark}")


if __name__ == "__main__":
    main()
