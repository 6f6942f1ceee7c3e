"""The cost of following child processes: `ulma run` of a multiprocessing.Pool workload
(workloads/pool.py) with its workers followed (the default) and with --no-children, against
plain python; each start method.

    python bench/children.py [--rounds R] [--methods fork,spawn,forkserver] [--python PATH]

Rounds are interleaved (plain, --no-children, followed, for each method in turn), and each
ratio is a run's time over plain's in the same round: the table gives the median ratio with
the lowest and highest in brackets.  Two times per run: the workload's own (the Pool from its
start to its end, as the workload measures it: the workers' start-up, their work and their
end, which is where following costs) and the whole process (ulma's start-up and report too).
Wall-clock figures: on a busy machine the brackets are wide; rerun with more rounds.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
WORKLOAD = HERE / "workloads" / "pool.py"
MODES = {
    "plain": [],
    "no-children": ["-m", "ulma", "run", "--no-report", "--no-live", "--no-children"],
    "followed": ["-m", "ulma", "run", "--no-report", "--no-live"],
}


def run(python: str, mode: str, method: str) -> tuple[float, float, str]:
    """(workload seconds, whole seconds, check digest)."""
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [python, *MODES[mode], str(WORKLOAD), method]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    whole = time.perf_counter() - t0
    seconds = re.search(r"BENCH_SECONDS=([\d.]+)", proc.stderr)
    check = re.search(r"BENCH_CHECK=(\d+)", proc.stderr)
    if proc.returncode != 0 or not seconds or not check:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return float(seconds.group(1)), whole, check.group(1)


def spread(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--methods", default="fork,spawn,forkserver")
    p.add_argument("--python", default=sys.executable)
    opts = p.parse_args()
    methods = opts.methods.split(",")
    ratios: dict[tuple[str, str, str], list[float]] = {}
    plain: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(opts.rounds):
        for method in methods:
            runs = {mode: run(opts.python, mode, method) for mode in MODES}
            if len({check for _, _, check in runs.values()}) != 1:
                sys.exit(f"{method}: the workload's result differs between modes: {runs}")
            times = {mode: (pool, whole) for mode, (pool, whole, _) in runs.items()}
            plain[method].append(times["plain"][0])
            for mode in ("no-children", "followed"):
                for i, what in enumerate(("pool", "whole")):
                    ratios.setdefault((method, mode, what), []).append(times[mode][i] / times["plain"][i])
            for i, what in enumerate(("pool", "whole")):
                ratios.setdefault((method, "followed/no-children", what), []).append(
                    times["followed"][i] / times["no-children"][i])
    print(f"Pool of 4 workers, 64 tasks; {opts.rounds} rounds; python {opts.python}")
    print(f"{'method':<11} {'plain pool s':>12}  {'what':<6} {'--no-children':>22} {'followed':>22} "
          f"{'followed / --no-children':>26}")
    for method in methods:
        for what in ("pool", "whole"):
            alone, followed = ratios[method, "no-children", what], ratios[method, "followed", what]
            print(f"{method:<11} {statistics.median(plain[method]):>12.3f}  {what:<6} "
                  f"{spread(alone):>22} {spread(followed):>22} "
                  f"{spread(ratios[method, 'followed/no-children', what]):>26}")


if __name__ == "__main__":
    main()
