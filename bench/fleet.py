"""The bandwidth of `ulma run --to`: bytes on the wire (after zstd) per second of the program and per
event, for --to-send aggregates and --to-send events, against a local `ulma collect`; and the run
time against `ulma run` without --to (the stream is the monitor's work, never the program's).

    python bench/fleet.py [--rounds R] [--python PATH] [--workload calls|sleepy]

calls: a call-bound loop (about a million events a second); sleepy: a program that mostly waits
(few events; the aggregates' fixed cost shows).  Each mode is run R times; the table gives the median
with the lowest and highest in brackets.  Bytes are the monitor's own count (its last line:
"... KiB sent (... KiB before compression)").
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
    out = {"wall_s": wall, "program_s": report["wall_ns"] / 1e9, "events": report["events"]}
    if to:
        m = SENT.search(result.stderr)
        if m is None:
            raise SystemExit(f"no stream figures in:\n{result.stderr}")
        out["wire"] = int(m.group(1)) * 1024
        out["raw"] = int(m.group(2)) * 1024
        d = DROPPED.search(result.stderr)
        out["dropped"] = int(d.group(1)) if d else 0
    return out


def fmt(values: list[float], unit: str = "", scale: float = 1.0) -> str:
    v = [x / scale for x in values]
    return f"{statistics.median(v):.1f}{unit} [{min(v):.1f}-{max(v):.1f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--workload", choices=list(WORKLOADS), default="calls")
    opts = p.parse_args()
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


if __name__ == "__main__":
    main()
