"""Programs that make code: `workloads/codegen.py` makes N distinct functions
with exec() (default 300 000) and calls each once.  Plain python and
`ulma run --no-report` run interleaved; each run's whole wall time (start-up
and ulma's final report included) is timed, and ulma's monitor reports its
own peak resident memory.  Targets (issue 9 §7): monitor <= 300 MiB, run
<= 3x plain.

    python bench/made_code.py [--functions N] [--rounds R] [--python PATH] [--json]

With --json, ulma also writes its JSON report (`--json FILE`, in a temporary
directory), whose writing is then part of the monitor's peak memory.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "workloads" / "codegen.py"
SRC = HERE.parent / "src"
# ulma in this process, its own peak RSS (not the program's) on stderr at exit
MONITOR = ("import atexit, resource, runpy, sys\n"
           "atexit.register(lambda: sys.stderr.write('MONITOR_MAXRSS_KB=%d\\n' % "
           "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n"
           "sys.argv = ['ulma'] + sys.argv[1:]\n"
           "runpy.run_module('ulma', run_name='__main__', alter_sys=True)\n")


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the process tree, stderr)."""
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    before = os.times()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    wall = time.perf_counter() - t0
    after = os.times()
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu, proc.stderr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--functions", type=int, default=300_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--json", action="store_true", help="ulma writes its JSON report too")
    opts = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure(opts, Path(tmp, "report.json") if opts.json else None)


def measure(opts: argparse.Namespace, json_path: Path | None) -> None:
    n = str(opts.functions)
    plain_cmd = [opts.python, str(WORKLOAD), n]
    json_args = ["--json", str(json_path)] if json_path else []
    ulma_cmd = [opts.python, "-c", MONITOR, "run", "--no-report", *json_args, str(WORKLOAD), n]
    ratios, cpu_ratios, rss, plain_walls = [], [], [], []
    for r in range(opts.rounds):
        pw, pc, _ = timed(plain_cmd)
        uw, uc, err = timed(ulma_cmd)
        kb = int(re.findall(r"MONITOR_MAXRSS_KB=(\d+)", err)[-1])
        ratios.append(uw / pw)
        cpu_ratios.append(uc / pc)
        rss.append(kb / 1024)
        plain_walls.append(pw)
        print(f"round {r + 1}: plain {pw:.2f} s, ulma {uw:.2f} s ({uw / pw:.2f}x wall, {uc / pc:.2f}x CPU), "
              f"monitor peak {kb / 1024:.0f} MiB", flush=True)
    print(f"{opts.functions} exec-made functions{' (--json)' if json_path else ''}, Python "
          f"{sys.version.split()[0]}: plain "
          f"{statistics.median(plain_walls):.2f} s; ulma {statistics.median(ratios):.2f}x wall "
          f"[{min(ratios):.2f}-{max(ratios):.2f}], {statistics.median(cpu_ratios):.2f}x CPU; monitor peak "
          f"{max(rss):.0f} MiB (targets: <= 3x, <= 300 MiB)")


if __name__ == "__main__":
    main()
