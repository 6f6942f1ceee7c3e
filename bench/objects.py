"""What `ulma run --objects` costs (issue 14), beside ulma without it and memray's tracking.

    python bench/objects.py [--rounds R]   (3.13: the ref tracer; 3.11, 3.12: the object allocator)

workloads/mix.py (a realistic mix) and workloads/alloc.py (objects made and dropped at a high
rate) run R rounds, interleaved, one subprocess each, the workload timing its own work: plain
python, `ulma run --no-report`, `ulma run --no-report --objects`, and `memray run` where memray
is installed (else said).  Prints the median ratio to plain of the program thread's CPU time
(robust to a busy machine) and of wall time, with the lowest and highest in brackets, and the
objects --objects counted per second of the plain run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from control import seconds

HERE = Path(__file__).resolve().parent


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f}x [{min(xs):.3f}, {max(xs):.3f}]"


def one(workload: str, rounds: int) -> None:
    py = sys.executable
    script = str(HERE / "workloads" / workload)
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "objects.json")
        modes = {
            "ulma run": [py, "-m", "ulma", "run", "--no-report", script],
            "ulma run --objects": [py, "-m", "ulma", "run", "--no-report", "--objects", "--json", report,
                                   script],
        }
        if importlib.util.find_spec("memray") is not None:
            modes["memray run"] = [py, "-m", "memray", "run", "-q", "-f", "-o", os.path.join(tmp, "m.bin"),
                                   script]
        walls: dict[str, list[float]] = {m: [] for m in modes}
        cpus: dict[str, list[float]] = {m: [] for m in modes}
        plain: list[float] = []
        made = 0
        for _ in range(rounds):
            base, base_cpu, check = seconds([py, script])
            plain.append(base_cpu)
            for mode, cmd in modes.items():
                t, cpu_t, got = seconds(cmd)
                if got != check:
                    raise SystemExit(f"{mode} changed the program's result: {got} != {check}")
                walls[mode].append(t / base)
                cpus[mode].append(cpu_t / base_cpu)
            with open(report) as f:
                made = sum(t["created"] for t in json.load(f)["types"])
    print(f"{workload} ({rounds} rounds, plain CPU median {statistics.median(plain):.3f} s, "
          f"{made / statistics.median(plain) / 1e6:.2f} M objects made a second of it); ratio to plain: "
          "the program thread's CPU time | wall")
    for mode in modes:
        print(f"  {mode:<20} {spread(cpus[mode])} | {spread(walls[mode])}")
    if "memray run" not in modes:
        print("  memray run           not measured: memray is not installed (pip install memray)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    for workload in ("mix.py", "alloc.py"):
        one(workload, args.rounds)


if __name__ == "__main__":
    main()
