"""The bandwidth of `ulma run --to`: bytes on the wire (after zstd) per second of the program and per
event, for --to-send aggregates and --to-send events, against a local `ulma collect`; and the run
time against `ulma run` without --to (the stream is the monitor's work, never the program's).

    python bench/fleet.py [--rounds R] [--python PATH] [--workload calls|sleepy]
    python bench/fleet.py --ingest [--streams 4]

calls: a call-bound loop (about a million events a second); sleepy: a program that mostly waits
(few events; the aggregates' fixed cost shows).  Each mode is run R times; the table gives the median
with the lowest and highest in brackets.  Bytes are the monitor's own count (its last line:
"... KiB sent (... KiB before compression)").  The ratio of the program's own time with --to to
without it is printed last (the issue's target: at most 1.05), with the ratio of its main thread's
CPU time (on a machine with fewer cores than the program, its monitor and a local collector keep
busy, the wall ratio counts the cores they take from it).

--ingest: the collector's own capacity.  STREAMS programs run at once, each streaming every event
(`--to-send events`) to one collector that keeps them (`-o DIR`); the collector's CPU time (from
/proc, read just before it is stopped) and the events it received give events per CPU-second of the
collector -- the rate one core of it ingests (the issue's target: 5 M events/s from 4 streams) --
beside the events per wall second the programs managed to send on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
TOKEN = "bench-fleet-token-0123"
WORKLOADS = {
    "calls": "def f(i):\n    return i + 1\n\nfor i in range(3_000_000):\n    f(i)\n",
    "sleepy": "import time\n\ndef tick():\n    time.sleep(0.01)\n\nfor _ in range(300):\n    tick()\n",
}
DROPPED = re.compile(r"fell behind: (\d+) of")
SENT = re.compile(r"streamed .*?: (\d+) KiB sent \((\d+) KiB before compression\)")


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(SRC), ULMA_TOKEN=TOKEN)


def one(python: str, program: Path, to: str | None, mode: str, tmp: Path) -> dict[str, float]:
    cmd = [python, "-m", "ulma", "run", "--no-live", "--no-report", "--json", str(tmp / "r.json")]
    if to:
        cmd += ["--to", to, "--to-send", mode]
    t0 = time.perf_counter()
    result = subprocess.run([*cmd, str(program)], env=env(), capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    report = json.loads((tmp / "r.json").read_text())
    main_cpu = max((f["cpu_ns"] or 0 for f in report["functions"] if f["name"] == "<module>"), default=0)
    out = {"wall_s": wall, "program_s": report["wall_ns"] / 1e9, "events": report["events"],
           "program_cpu_s": main_cpu / 1e9}
    if to:
        m = SENT.search(result.stderr)
        if m is None:
            raise SystemExit(f"no stream figures in:\n{result.stderr}")
        out["wire"] = int(m.group(1)) * 1024
        out["raw"] = int(m.group(2)) * 1024
        d = DROPPED.search(result.stderr)
        out["dropped"] = int(d.group(1)) if d else 0
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest(python: str, streams: int, tmp: Path) -> None:
    program = tmp / "w.py"
    program.write_text(WORKLOADS["calls"])
    report = tmp / "collector.json"
    coll = subprocess.Popen([python, "-m", "ulma", "collect", "--listen", "127.0.0.1:0", "--no-table",
                             "--json", str(report), "-o", str(tmp / "merged")],
                            env=env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert coll.stderr is not None
    m = re.search(r"listening on (\S+)", coll.stderr.readline())
    if m is None:
        raise SystemExit("the collector did not start")
    before = cpu_seconds(coll.pid)
    t0 = time.perf_counter()
    runs = [subprocess.Popen([python, "-m", "ulma", "run", "--no-live", "--no-report", "--to", m.group(1),
                              "--to-send", "events", str(program)], env=env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for _ in range(streams)]
    for r in runs:
        _, err = r.communicate()
        if r.returncode:
            raise SystemExit(err)
    time.sleep(1.0)  # (the collector takes the last frames)
    wall = time.perf_counter() - t0
    used = cpu_seconds(coll.pid) - before
    coll.send_signal(signal.SIGINT)
    coll.wait(60)
    doc = json.loads(report.read_text())
    received = sum(p.get("events_received") or 0 for h in doc["hosts"] for p in h["processes"])
    print(f"{streams} streams: {received:,} events received in {wall:.1f} s wall "
          f"({received / wall / 1e6:.2f} M/s sent on this machine); the collector used {used:.2f} CPU-s: "
          f"{received / max(used, 1e-9) / 1e6:.2f} M events per CPU-second of the collector")


def fmt(values: list[float], unit: str = "", scale: float = 1.0) -> str:
    v = [x / scale for x in values]
    return f"{statistics.median(v):.1f}{unit} [{min(v):.1f}-{max(v):.1f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--workload", choices=list(WORKLOADS), default="calls")
    p.add_argument("--ingest", action="store_true", help="the collector's capacity (see above)")
    p.add_argument("--streams", type=int, default=4)
    opts = p.parse_args()
    if opts.ingest:
        with tempfile.TemporaryDirectory() as d:
            ingest(opts.python, opts.streams, Path(d))
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        program = tmp / "w.py"
        program.write_text(WORKLOADS[opts.workload])
        coll = subprocess.Popen([opts.python, "-m", "ulma", "collect", "--listen", "127.0.0.1:0",
                                 "--no-table"],
                                env=env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        assert coll.stderr is not None
        line = coll.stderr.readline()
        m = re.search(r"listening on (\S+)", line)
        if m is None:
            raise SystemExit(f"the collector did not start: {line}")
        to = m.group(1)
        rows: dict[str, list[dict[str, float]]] = {"no --to": [], "aggregates": [], "events": []}
        try:
            for _ in range(opts.rounds):
                rows["no --to"].append(one(opts.python, program, None, "", tmp))
                for mode in ("aggregates", "events"):
                    rows[mode].append(one(opts.python, program, to, mode, tmp))
        finally:
            coll.send_signal(signal.SIGINT)
            coll.wait(30)
    print(f"workload {opts.workload}, {opts.rounds} rounds, median [min-max]")
    print(f"{'mode':<11} {'ulma run s':>16} {'program s':>16} {'events':>9} {'wire KiB/s':>22} "
          f"{'wire B/event':>16} {'zstd':>5} {'not streamed':>12}")
    for mode, rs in rows.items():
        secs = [r["program_s"] for r in rs]
        line = (f"{mode:<11} {fmt([r['wall_s'] for r in rs]):>16} {fmt(secs):>16} "
                f"{statistics.median(r['events'] for r in rs):>9.0f}")
        if mode != "no --to":
            rate = [r["wire"] / s / 1024 for r, s in zip(rs, secs, strict=True)]
            per = [r["wire"] / max(r["events"], 1) for r in rs]
            ratio = statistics.median(r["raw"] / max(r["wire"], 1) for r in rs)
            dropped = statistics.median(r["dropped"] for r in rs)
            line += f" {fmt(rate):>22} {fmt(per):>16} {ratio:>5.1f} {dropped:>12.0f}"
        print(line)
    plain = statistics.median(r["program_s"] for r in rows["no --to"])
    plain_cpu = statistics.median(r["program_cpu_s"] for r in rows["no --to"])
    for mode in ("aggregates", "events"):
        ratio = statistics.median(r["program_s"] for r in rows[mode]) / plain
        cpu = statistics.median(r["program_cpu_s"] for r in rows[mode]) / plain_cpu
        print(f"program time with --to-send {mode} / without --to: {ratio:.3f}x (target: at most 1.05x); "
              f"the program thread's CPU time: {cpu:.3f}x")


if __name__ == "__main__":
    main()
