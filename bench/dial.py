"""The dial: what `ulma run --budget PCT` costs, measured, beside what it estimated.

    python bench/dial.py [--rounds R] [--budget PCT] [--engine E]

workloads/fib.py (call-bound) and workloads/mix.py (a realistic mix) run R rounds, interleaved,
one subprocess each, the workload timing its own work: plain python, `ulma run --budget PCT`
and full tracing (`ulma run`).  Prints the median ratio to plain of the program thread's CPU
time (robust to a busy machine) and of wall time, with the lowest and highest in brackets.
Target: --budget 5 at most 1.07x plain.  Then, for the last --budget round: the functions the
dial switched off (with their counts up to then) and the estimated overhead (the mean of its
windows), beside the measured one.  And the estimate checked where there is much to estimate:
full tracing's events priced as the dial prices them (each round: the events of the full run
times the price the dial of the same round measured, ulma/monitor/price.py; and times the
start-up probe cost, what the dial used before), over the program's CPU time less that, beside
full tracing's measured overhead (CPU): medians over the rounds, and the per-round ratios;
and per event: the prices beside full tracing's CPU time over plain's, over its events.

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
        full_report = os.path.join(tmp, "full.json")
        modes = {
            f"--budget {budget:g}": [py, "-m", "ulma", "run", "--no-report", "--json", report, *engine,
                                     "--budget", str(budget), script],
            "full tracing": [py, "-m", "ulma", "run", "--no-report", "--json", full_report, *engine, script],
        }
        estimates: list[tuple[float, float, float]] = []  # (priced, probe-priced, measured) %
        per_event: list[tuple[float, float, float]] = []  # (price, probe, measured) ns an event
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
                if mode == "full tracing":
                    with open(full_report) as f:
                        full = json.load(f)
                    price = dial_of(report)["event_ns"]
                    estimates.append((estimate(full["events"], price, cpu_t),
                                      estimate(full["events"], full["probe_ns"], cpu_t),
                                      100 * (cpu_t / base_cpu - 1)))
                    per_event.append((price, full["probe_ns"], (cpu_t - base_cpu) * 1e9 / full["events"]))
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
    priced, probed, measured = (statistics.median(e[i] for e in estimates) for i in range(3))
    print(f"  full tracing: estimated {priced:.1f}% (events x the measured price), {probed:.1f}% (x the "
          f"start-up probe cost), measured {measured:.1f}% (CPU); estimate/measured per round: "
          + " ".join(f"{e[0] / e[2]:.2f}" if e[2] > 0 else "-" for e in estimates)
          + "; with the probe cost: "
          + " ".join(f"{e[1] / e[2]:.2f}" if e[2] > 0 else "-" for e in estimates))
    price, probe, paid = (statistics.median(e[i] for e in per_event) for i in range(3))
    print(f"  per event (medians): priced {price:.1f} ns, start-up probe {probe:.1f} ns, measured "
          f"{paid:.1f} ns (full tracing's CPU time over plain's, over its events)")
    history = [p for _, p in dial["history"]]
    mean = statistics.fmean(history) if history else 0.0
    print(f"  the dial (last round): estimated overhead {mean:.1f}% (mean of {len(history)} windows), "
          f"measured {100 * (cpus[next(iter(modes))][-1] - 1):.1f}% (CPU, that round); switched off:")
    for sw in dial["switched_off"]:
        back = f", on again at {sw['back_on_s']:.2f} s" if sw["back_on_s"] is not None else ""
        print(f"    {sw['at_s']:.2f} s {sw['function']}: {sw['calls']} calls up to then{back}")


def estimate(events: int, price_ns: float, cpu_s: float) -> float:
    """The dial's estimate (ulma/monitor/dial.py) over a whole run: % of the plain run."""
    cost = events * price_ns / 1e9
    return 100 * cost / (cpu_s - cost) if cpu_s > cost else float("inf")


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
