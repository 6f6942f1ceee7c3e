"""How close the start-up probe calibration comes to a long one, and what it costs.

    python bench/probe_cost.py [--runs N] [--setting CALLSxROUNDS[:wall] ...]

Each run is a fresh process, as at start-up: the agent starts on an in-process
session (the default engine, hooks on), the calibration runs once with the
setting under test (cold, exactly as `ulma run` does it: `calibrate.interleaved`)
and is timed (wall and thread CPU time), then a long reference calibration runs in the same process
(REF_CALLS calls, REF_ROUNDS rounds each way, in CPU time: the best of many short rounds).  `:wall`
times a setting's loops in wall time (perf_counter), as ulma did before, else
in the thread's CPU time (calibrate.CLOCK).  Settings take turns from run to
run.  Per setting it prints the median time the calibration took
and, over the runs, the ratio of its probe cost to the reference's: median,
and the worst one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
REF_CALLS = 5_000
REF_ROUNDS = 41


def child(calls: int, rounds: int, wall: bool) -> None:
    from ulma import _core
    from ulma.agent import calibrate, resolve_engine

    engine = resolve_engine("auto")
    fd = os.memfd_create("ulma-probe-cost", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    session = _core.Session(fd, 1 << 20, 4)
    # as the bootstrap does: ulma's agent folder hidden (the calibration's own frames in it)
    _core.agent_start(fd, engine, 0, os.path.dirname(calibrate.__file__) + os.sep, None, 0,
                      native_calls=False, cpu_interval_us=100)
    per_call = calibrate.callbacks_per_call(False, engine)
    try:
        c0, t0 = time.thread_time(), time.perf_counter()
        off, on = calibrate.interleaved(calls, rounds, time.perf_counter_ns if wall else calibrate.CLOCK)
        took, took_cpu = time.perf_counter() - t0, time.thread_time() - c0
        probe = calibrate.probe_ns(off, on, per_call, calls)
        ref_off, ref_on = calibrate.interleaved(REF_CALLS, REF_ROUNDS, time.thread_time_ns)
        ref = calibrate.probe_ns(ref_off, ref_on, per_call, REF_CALLS)
    finally:
        _core.agent_stop()
        session.close()
        os.close(fd)
    print(json.dumps({"took_ms": took * 1000, "took_cpu_ms": took_cpu * 1000, "probe": probe, "ref": ref}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20, help="runs per setting")
    p.add_argument("--setting", action="append", help="CALLSxROUNDS (default: the one in calibrate.py)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        shape, _, how = args.child.partition(":")
        calls, rounds = (int(x) for x in shape.split("x"))
        child(calls, rounds, how == "wall")
        return
    sys.path.insert(0, str(SRC))
    from ulma.agent import calibrate

    settings = args.setting or [f"{calibrate.CALLS}x{calibrate.ROUNDS}"]
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    results: dict[str, list[dict[str, float]]] = {s: [] for s in settings}
    for _ in range(args.runs):
        for s in settings:
            out = subprocess.run([sys.executable, __file__, "--child", s], env=env, capture_output=True,
                                 text=True, check=True).stdout
            results[s].append(json.loads(out))
    print(f"Python {sys.version.split()[0]}, {args.runs} runs per setting, reference "
          f"{REF_CALLS}x{REF_ROUNDS} in the same process")
    for s, rs in results.items():
        ratios = [r["probe"] / r["ref"] for r in rs]
        worst = max(ratios, key=lambda x: abs(x - 1))
        print(f"  {s:>12}: calibration {statistics.median(r['took_ms'] for r in rs):5.1f} ms, "
              f"{statistics.median(r['took_cpu_ms'] for r in rs):5.1f} ms CPU (medians); "
              f"probe {statistics.median(r['probe'] for r in rs):5.2f} ns, reference "
              f"{statistics.median(r['ref'] for r in rs):5.2f} ns; probe/reference median "
              f"{statistics.median(ratios):.3f}, worst {worst:.3f}")


if __name__ == "__main__":
    main()
