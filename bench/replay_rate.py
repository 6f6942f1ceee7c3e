"""How fast `ulma report` and each `ulma export` format read a trace, and how much memory they take.

    python bench/replay_rate.py [--events N] [--formats text,chrome,...] [--python PATH]

Writes two synthetic traces with the real trace writer -- N events and 4N events (2 threads, a
random walk over 40 functions, stacks 1 to 12 deep, each function calling one of two others, like
a busy program) -- then runs each command
once per trace in a subprocess of its own and prints, side by side, the events per second of CPU
time (user + system of that subprocess: one core; interpreter start-up included) and its peak
resident memory (ru_maxrss).  Targets: at least 10 M events/s, and the same peak memory for N and
4N events (memory independent of the trace's length).

The modules are loaded compiled, as from an installed ulma (pip compiles them at install): each
command runs once untimed first, writing a bytecode cache of the bench's own (PYTHONPYCACHEPREFIX,
in its temporary directory), which the timed runs read whatever PYTHONDONTWRITEBYTECODE says.  With
that variable set and no cache, every run compiled ulma's source again (about 0.03 s a run).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ulma.exporters.base import FORMATS  # noqa: E402
from ulma.format import records, trace  # noqa: E402

FUNCTIONS = 40
DEPTH = 12
BLOCK = 1 << 16  # events per chunk


def block(rng: random.Random) -> bytes:
    """One chunk's worth of a random walk (calls and returns balanced), ticks from 0."""
    events: list[records.Event] = []
    stack: list[int] = []
    t = 0
    while len(events) < BLOCK - 32:
        t += rng.randrange(20, 200)
        if not stack or (len(stack) < DEPTH and rng.random() < 0.5):
            # each function calls one of two others: about 2^DEPTH distinct stacks, as a program has
            fid = ((stack[-1] if stack else 0) * 7 + rng.randrange(2)) % FUNCTIONS + 1
            stack.append(fid)
            events.append(records.Event(t, fid, records.CALL, 0, 0))
        else:
            events.append(records.Event(t, stack.pop(), records.RETURN, 0, 0))
    while stack:
        t += 50
        events.append(records.Event(t, stack.pop(), records.RETURN, 0, 0))
    return records.encode(events)


def shifted(data: bytes, by: int) -> bytes:
    """The block with every tick moved on by `by`."""
    out = bytearray(data)
    view = memoryview(out).cast("Q")
    for i in range(0, len(view), 2):
        view[i] += by
    return bytes(out)


def write_trace(path: Path, events: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    blocks = [block(rng) for _ in range(4)]
    span = max(memoryview(b).cast("Q")[-2] for b in blocks) + 1000
    w = trace.TraceWriter(str(path), {"start_ticks": 0, "python": "synthetic", "engine": "bench",
                                      "clock": "synthetic"})
    w.symbols([trace.SymbolDef(fid, 1, 0, f"function_{fid}", "/bench/prog.py", fid * 10)
               for fid in range(1, FUNCTIONS + 1)])
    written, offset = 0, 0
    while written < events:
        for thread in (0, 1):
            data = blocks[(written // BLOCK) % len(blocks)]
            w.events(thread, shifted(data, offset))
            written += len(data) // records.EVENT_BYTES
        offset += span
    w.close({"ns_per_tick": 1.0, "wall_ns": offset, "program_pid": 1, "os_tid": {"0": 1, "1": 2},
             "dropped": {}})
    return written


def measure(cmd: list[str], pycache: Path) -> tuple[float, int, int]:
    """(CPU seconds, peak KiB, exit status) of one run of cmd, modules compiled into pycache."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONPYCACHEPREFIX": str(pycache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.stderr.write(f"{' '.join(cmd)} failed:\n{err.decode(errors='replace')}\n")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000, help="events in the smaller trace (N)")
    ap.add_argument("--formats", default="report," + ",".join(FORMATS),
                    help="what to run: report and export formats, comma-separated")
    ap.add_argument("--python", default=sys.executable)
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ulma-bench-") as tmp:
        traces = []
        for factor in (1, 4):
            path = Path(tmp) / f"x{factor}.ulma"
            n = write_trace(path, opts.events * factor)
            traces.append((path, n))
        n1, n4 = traces[0][1], traces[1][1]
        print(f"{'command':<12} {'N=' + format(n1, ','):>16} {'4N=' + format(n4, ','):>16}"
              f" {'peak N':>10} {'peak 4N':>10}")
        pycache = Path(tmp) / "pycache"
        for what in opts.formats.split(","):
            rates, peaks = [], []
            for warm, (path, n) in [(True, traces[0]), *((False, t) for t in traces)]:
                out = Path(tmp) / f"out.{what}"
                if what == "report":
                    cmd = [opts.python, "-m", "ulma", "report", str(path)]
                else:
                    cmd = [opts.python, "-m", "ulma", "export", str(path), "--format", what, "-o", str(out)]
                cpu, peak, status = measure(cmd, pycache)
                if warm:  # untimed: fills the bytecode cache
                    out.unlink(missing_ok=True)
                    continue
                rates.append("failed" if status else f"{n / cpu / 1e6:.2f} M ev/s")
                peaks.append(f"{peak / 1024:.0f} MiB")
                out.unlink(missing_ok=True)
            print(f"{what:<12} {rates[0]:>16} {rates[1]:>16} {peaks[0]:>10} {peaks[1]:>10}")


if __name__ == "__main__":
    main()
