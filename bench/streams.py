"""What `ulma run --log` and `--jsonl` cost: on the monitor's side, and (it should be nothing) on
the program's.

    python bench/streams.py [--workloads fib,mix] [--repeat N] [--python PATH]

Runs each workload under `ulma run --no-live --no-report` four ways -- no stream, `--log`,
`--jsonl`, both -- interleaved, N rounds (default 3), the files in a temporary directory removed
after each run.  For each mode it prints the medians of:

- program s: the workload's own time (its BENCH_SECONDS), and its ratio to ulma without streams
  (the program's overhead; the streams are written by the monitor, a separate process, so on a
  machine with a core to spare it should not move); program CPU s: the program's CPU time (its
  own rusage), which is what the streams could change without a spare core's noise;
- monitor CPU s: user + system CPU of the ulma process itself (its rusage from wait4, which also
  counts the program it waited for, minus the program's own rusage, which a wrapper prints);
- ring dropped: events the program could not write because the monitor drained too slowly;
- M events/s: events drained (the --json report's count) per second of the monitor's CPU -- the
  rate the monitor sustains writing those streams on one core;
- log dropped: events left out of the log because its writer fell behind (bounded, counted:
  ulma.monitor.streams); and the log's size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ROOT / "bench" / "workloads"
MODES = {"ulma": [], "--log": ["--log", "{d}/run.log"], "--jsonl": ["--jsonl", "{d}/run.jsonl"],
         "both": ["--log", "{d}/run.log", "--jsonl", "{d}/run.jsonl"]}
WRAP = """\
import resource, runpy, sys
path = sys.argv[1]
sys.argv = sys.argv[1:]
try:
    runpy.run_path(path, run_name="__main__")
finally:
    r = resource.getrusage(resource.RUSAGE_SELF)
    print(f"BENCH_RUSAGE={r.ru_utime + r.ru_stime:.6f}", file=sys.stderr)
"""


def one(python: str, workload: Path, mode: str, where: Path) -> dict[str, float]:
    d = where / "out"
    d.mkdir()
    wrap = where / "wrap.py"
    wrap.write_text(WRAP)
    extra = [a.format(d=d) for a in MODES[mode]]
    cmd = [python, "-m", "ulma", "run", "--no-live", "--no-report", "--json", str(d / "r.json"),
           *extra, str(wrap), str(workload)]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err}")
    program_cpu = float(re.findall(r"BENCH_RUSAGE=([\d.]+)", err)[-1])
    dropped = re.search(r"fell behind: (\d+) events", err)
    log = d / "run.log"
    report = json.loads((d / "r.json").read_text())
    out = {
        "program_s": float(re.findall(r"BENCH_SECONDS=([\d.]+)", err)[-1]),
        "program_cpu_s": program_cpu,
        "monitor_cpu_s": usage.ru_utime + usage.ru_stime - program_cpu,
        "events": report["events"],
        "ring_dropped": report["dropped"],
        "log_dropped": int(dropped[1]) if dropped else 0,
        "log_mb": log.stat().st_size / 1e6 if log.exists() else 0.0,
    }
    for f in d.iterdir():
        f.unlink()
    d.rmdir()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default="fib,mix")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--python", default=sys.executable)
    opts = p.parse_args()
    for name in opts.workloads.split(","):
        workload = WORKLOADS / f"{name}.py"
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
        for _ in range(opts.repeat):
            for mode in MODES:
                with tempfile.TemporaryDirectory(prefix="ulma-bench-") as where:
                    runs[mode].append(one(opts.python, workload, mode, Path(where)))
        base = statistics.median(r["program_s"] for r in runs["ulma"])
        print(f"\n{name} ({opts.repeat} rounds, medians; python {opts.python})")
        print(f"{'mode':8} {'program s':>10} {'vs ulma':>8} {'program CPU s':>14} {'monitor CPU s':>14} "
              f"{'events':>12} {'ring dropped':>13} {'M events/s':>11} {'log dropped':>12} {'log MB':>8}")
        for mode, rs in runs.items():
            def med(key: str, rs: list[dict[str, float]] = rs) -> float:
                return statistics.median(r[key] for r in rs)
            rate = statistics.median(r["events"] / r["monitor_cpu_s"] / 1e6 for r in rs)
            print(f"{mode:8} {med('program_s'):10.3f} {med('program_s') / base:7.2f}x "
                  f"{med('program_cpu_s'):14.2f} {med('monitor_cpu_s'):14.2f} {med('events'):12,.0f} "
                  f"{med('ring_dropped'):13,.0f} {rate:11.2f} "
                  f"{med('log_dropped'):12,.0f} {med('log_mb'):8.0f}")


if __name__ == "__main__":
    main()
