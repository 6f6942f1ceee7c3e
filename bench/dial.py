"""The dial: what `ulma run --budget PCT` costs, measured, beside what it estimated.

    python bench/dial.py [--rounds R] [--budget PCT] [--engine E]

workloads/fib.py (call-bound) and workloads/mix.py (a realistic mix) run R rounds, interleaved,
one subprocess each, the workload timing its own work: plain python, `ulma run --budget PCT`
and full tracing (`ulma run`).  Prints the median ratio to plain of the program thread's CPU
time (robust to a busy machine) and of wall time, with the lowest and highest in brackets.
Target: --budget 5 at most 1.07x plain.  Then, for the last --budget round: the functions the
dial switched off (with their counts up to then) and the estimated overhead (the mean of its
windows), beside the measured one.

Not in callgrind: the dial judges windows of real time, which valgrind stretches fifty-fold.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from control import seconds

HERE = Path(__file__).resolve().parent
TARGET = 1.07


def dial_of(path: str) -> dict[str, Any]:
    with open(path) as f:
        dial: dict[str, Any] = json.load(f)["dial"]
    return dial


def one(workload: str, rounds: int, budget: float, engine: list[str]) -> None:
    py = sys.executable
    script = str(HERE / "workloads" / workload)
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        modes = {
            f"--budget {budget:g}": [py, "-m", "ulma", "run", "--no-report", "--json", report, *engine,
                                     "--budget", str(budget), script],
            "full tracing": [py, "-m", "ulma", "run", "--no-report", *engine, script],
        }
        walls: dict[str, list[float]] = {m: [] for m in modes}
        cpus: dict[str, list[float]] = {m: [] for m in modes}
        plain: list[float] = []
        for _ in range(rounds):
            base, base_cpu, check = seconds([py, script])
            plain.append(base_cpu)
            for mode, cmd in modes.items():
                t, cpu_t, got = seconds(cmd)
                if got != check:
                    raise SystemExit(f"{mode} changed the program's result: {got} != {check}")
                walls[mode].append(t / base)
                cpus[mode].append(cpu_t / base_cpu)
        dial = dial_of(report)
    print(f"{workload} ({rounds} rounds, plain CPU median {statistics.median(plain):.3f} s); ratio to plain: "
          "the program thread's CPU time | wall")
    for mode in modes:
        c, w = cpus[mode], walls[mode]
        line = (f"  {mode:<14} cpu {statistics.median(c):.3f}x [{min(c):.3f} .. {max(c):.3f}]  "
                f"wall {statistics.median(w):.3f}x [{min(w):.3f} .. {max(w):.3f}]")
        if mode.startswith("--budget"):
            line += f"   target <= {TARGET}x: {'ok' if statistics.median(c) <= TARGET else 'MISS'}"
        print(line)
    history = [p for _, p in dial["history"]]
    mean = statistics.fmean(history) if history else 0.0
    print(f"  the dial (last round): estimated overhead {mean:.1f}% (mean of {len(history)} windows), "
          f"measured {100 * (cpus[next(iter(modes))][-1] - 1):.1f}% (CPU, that round); switched off:")
    for sw in dial["switched_off"]:
        back = f", on again at {sw['back_on_s']:.2f} s" if sw["back_on_s"] is not None else ""
        print(f"    {sw['at_s']:.2f} s {sw['function']}: {sw['calls']} calls up to then{back}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--budget", type=float, default=5.0)
    p.add_argument("--engine", default="auto")
    args = p.parse_args()
    engine = [] if args.engine == "auto" else ["--engine", args.engine]
    print(f"Python {sys.version.split()[0]}, engine {args.engine}")
    for workload in ("fib.py", "mix.py"):
        one(workload, args.rounds, args.budget, engine)


if __name__ == "__main__":
    main()
