"""The control channel and scope: what `--only` costs, and how fast a switch takes effect.

    python bench/control.py [--rounds R] [--switches N] [--engine E]

1. `--only`: workloads/scoped.py, whose package `chosen` makes a tenth of the Python calls, run
   R rounds (interleaved, one subprocess each, the workload timing its own work): plain python,
   `ulma run --no-report --only chosen`, and full tracing (`ulma run --no-report`).  Prints the
   median ratio to plain of each, with the lowest and highest in brackets.  Target: --only at
   most 1.05x plain.
2. Switch latency: the same program running for a while under ulma (monitor in this process,
   as the live view has it); a function of the program switched off and on again N times
   through the channel.  Prints the median and worst time from posting a command to the tick
   the agent says it took effect.  Target: at most 100 ms.

3. `--only` in instructions (exact where wall time is noisy): the workload's loop run under
   `valgrind --tool=callgrind` in one process, counting only the loop (entered through `map`,
   `--toggle-collect=map_next`), plain and with the agent on an in-process session: --only
   chosen, --only matching nothing (what the untraced functions cost), full tracing; no CPU
   readings (valgrind runs ~50x slower, so they would come ~50x more often per event than in a
   real run, as bench/per_event.py explains); no monitor.  `--no-callgrind` skips it.

The idle channel's cost is not wall-clock here: `bench/per_event.py` counts the instructions per
event with callgrind (see README.md).
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

from ulma_bench.callgrind import callgrind_loop

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "workloads" / "scoped.py"
SRC = HERE.parent / "src"
ONLY_TARGET = 1.05
LATENCY_TARGET_NS = 100_000_000


def seconds(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, the program thread's CPU seconds, the result's check) of one run."""
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    found = re.search(r"BENCH_SECONDS=([\d.]+)", done.stderr)
    cpu = re.search(r"BENCH_CPU_SECONDS=([\d.]+)", done.stderr)
    check = re.search(r"BENCH_CHECK=(\S+)", done.stderr)
    if done.returncode or not found or not cpu or not check:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return float(found.group(1)), float(cpu.group(1)), check.group(1)


def only_cost(rounds: int, engine: list[str]) -> None:
    py = sys.executable
    modes = {
        "plain": [py, str(WORKLOAD)],
        "--only chosen": [py, "-m", "ulma", "run", "--no-report", *engine, "--only", "chosen", str(WORKLOAD)],
        "full tracing": [py, "-m", "ulma", "run", "--no-report", *engine, str(WORKLOAD)],
    }
    walls: dict[str, list[float]] = {m: [] for m in modes if m != "plain"}
    cpus: dict[str, list[float]] = {m: [] for m in modes if m != "plain"}
    plain: list[float] = []
    for _ in range(rounds):
        base, base_cpu, check = seconds(modes["plain"])
        plain.append(base)
        for mode, cmd in modes.items():
            if mode == "plain":
                continue
            t, cpu_t, got = seconds(cmd)
            if got != check:
                raise SystemExit(f"{mode} changed the program's result: {got} != {check}")
            walls[mode].append(t / base)
            cpus[mode].append(cpu_t / base_cpu)
    print(f"--only on workloads/scoped.py ({rounds} rounds, plain median {statistics.median(plain):.3f} s); "
          "ratio to plain: wall | the program thread's CPU time (robust to a busy machine)")
    for mode in walls:
        w, c = walls[mode], cpus[mode]  # ratios per round
        line = (f"  {mode:<14} wall {statistics.median(w):.3f}x [{min(w):.3f} .. {max(w):.3f}]  "
                f"cpu {statistics.median(c):.3f}x [{min(c):.3f} .. {max(c):.3f}]")
        if mode == "--only chosen":
            line += f"   target <= {ONLY_TARGET}x: {'ok' if statistics.median(c) <= ONLY_TARGET else 'MISS'}"
        print(line)


def switch_latency(switches: int, engine: str) -> None:
    sys.path.insert(0, str(SRC))
    from ulma.agent import resolve_engine
    from ulma.monitor.live import LiveRun
    from ulma.monitor.session import Options, Run, Target

    run = Run(Target("script", str(WORKLOAD), ("600",)), Options(engine=resolve_engine(engine)),
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    live = LiveRun(run).start()
    try:
        deadline = time.monotonic() + 30
        fid = None
        while fid is None and time.monotonic() < deadline:
            fid = next((k for k, s in list(run.session.symbols.items()) if s.name == "busy"), None)
            time.sleep(0.01)
        assert fid is not None, "the program's busy() never showed"
        latencies = []
        for i in range(2 * switches):
            (cmd,) = live.control.switch([fid], off=i % 2 == 0)
            while cmd.done_ns is None and time.monotonic() < deadline + 60:
                time.sleep(0.001)
            assert cmd.status == "applied" and cmd.done_ns is not None, cmd
            latencies.append(cmd.done_ns - cmd.posted_ns)
            time.sleep(0.02)
    finally:
        run.proc.terminate()
        live.done.wait(30)
        run.finish()
    med, worst = statistics.median(latencies), max(latencies)
    print(f"switch latency ({len(latencies)} switches off/on of busy(), posting to the agent's tick): "
          f"median {med / 1e6:.2f} ms, worst {worst / 1e6:.2f} ms   target <= 100 ms: "
          f"{'ok' if worst <= LATENCY_TARGET_NS else 'MISS'}")


CALLGRIND_ROUNDS = 6000


def callgrind_child(mode: str, engine: str) -> None:
    sys.path.insert(0, str(WORKLOAD.parent))
    sys.path.insert(0, str(SRC))
    import scoped  # type: ignore[import-not-found]

    from ulma import _core
    from ulma.agent import resolve_engine

    acc = scoped.Acc()
    if mode == "plain":
        sum(map(lambda i: scoped.step(acc, i), range(CALLGRIND_ROUNDS)))
        return
    fd = os.memfd_create("ulma-control-bench", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    session = _core.Session(fd, 64 << 20, 4)
    only = {"only": ["chosen"], "none": ["no-such-module"]}.get(mode)
    _core.agent_start(fd, resolve_engine(engine), cpu_interval_us=0, only=only)
    try:
        sum(map(lambda i: scoped.step(acc, i), range(CALLGRIND_ROUNDS)))
    finally:
        _core.agent_stop()
    session.close()
    os.close(fd)


def callgrind_instructions(mode: str, engine: str) -> int:
    return callgrind_loop([sys.executable, __file__, "--child", mode, "--engine", engine], mode)[0]


def only_instructions(engine: str) -> None:
    plain = callgrind_instructions("plain", engine)
    only = callgrind_instructions("only", engine)
    none = callgrind_instructions("none", engine)
    full = callgrind_instructions("full", engine)
    print(f"--only in instructions (callgrind, {CALLGRIND_ROUNDS} rounds of the loop): plain {plain:,}; "
          f"ratio to plain: --only chosen {only / plain:.3f}x, --only matching nothing {none / plain:.3f}x, "
          f"full tracing {full / plain:.3f}x   "
          f"target <= {ONLY_TARGET}x: {'ok' if only / plain <= ONLY_TARGET else 'MISS'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--switches", type=int, default=20)
    p.add_argument("--engine", default="auto")
    p.add_argument("--no-callgrind", action="store_true")
    p.add_argument("--child", choices=("plain", "only", "none", "full"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        callgrind_child(args.child, args.engine)
        return
    engine = [] if args.engine == "auto" else ["--engine", args.engine]
    print(f"Python {sys.version.split()[0]}, engine {args.engine}")
    only_cost(args.rounds, engine)
    switch_latency(args.switches, args.engine)
    if not args.no_callgrind:
        only_instructions(args.engine)


if __name__ == "__main__":
    main()
