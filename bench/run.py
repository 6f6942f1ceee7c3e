"""ulma's benchmark: wall-time overhead of ulma next to cProfile, yappi and VizTracer.

    python bench/run.py [--quick] [--workloads fib,mix] [--python PATH ...] [--json-out FILE]

Every mode of a workload runs as its own subprocess, one after the other in each round, and
each ratio divides a mode's time by plain Python's time in the same round. See bench/README.md.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

from ulma_bench.contention import CpuWatch
from ulma_bench.measure import Settings, run_rounds
from ulma_bench.modes import MODE_KEYS, WORKLOADS, select_modes
from ulma_bench.probe import (
    Interpreter,
    ProbeError,
    drain_rates,
    install,
    probe,
    readings_cost,
    ulma_counts,
)
from ulma_bench.report import READINGS_WORKLOADS, PythonResult, WorkloadResult, render, to_json

DEFAULT_ROUNDS = 5
QUICK_ROUNDS = 3
DRAIN_EVENTS = 20_000_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_ROUNDS} rounds and no warm-up round (default {DEFAULT_ROUNDS} rounds)",
    )
    parser.add_argument("--repeat", type=int, metavar="N", help="number of measured rounds")
    parser.add_argument(
        "--workloads",
        type=_names(WORKLOADS),
        default=list(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--modes",
        type=_names(MODE_KEYS),
        default=list(MODE_KEYS),
        help=f"comma-separated subset of {','.join(MODE_KEYS)} (plain is always run)",
    )
    parser.add_argument(
        "--python",
        action="append",
        metavar="PATH",
        help="interpreter to measure; repeat for several (default: this one)",
    )
    parser.add_argument("--json-out", type=Path, metavar="FILE", help="also write all results as JSON")
    parser.add_argument(
        "--install",
        action="store_true",
        help="first pip-install bench/requirements.txt and this repository into each --python",
    )
    parser.add_argument(
        "--ring-size",
        metavar="SIZE",
        help="passed to `ulma run` for the full-tracing mode",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="limit for one run (600 s)",
    )
    parser.add_argument(
        "--drain-events",
        type=int,
        default=DRAIN_EVENTS,
        metavar="N",
        help=f"events for the synthetic drain benchmark ({DRAIN_EVENTS:,})",
    )
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def _names(allowed: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}, got {text!r}")
        return names

    return parse


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_python(
    result: PythonResult,
    workloads: list[str],
    settings: Settings,
    drain_events: int,
    drain_repeat: int,
) -> None:
    """Fill `result` in place, so an interrupt keeps whatever was already measured."""
    interp = result.interpreter
    runnable = tuple(mode for mode in result.modes if result.unavailable(mode) is None)
    with_ulma = any(mode.key == "ulma" for mode in runnable)
    for name in workloads:
        watch = CpuWatch.start()
        workload = WorkloadResult(name, run_rounds(interp.executable, name, runnable, settings, progress))
        workload.others_cpus = watch.others_cpus()
        result.workloads.append(workload)
        if with_ulma:
            workload.counts = ulma_counts(
                interp.executable, name, settings.cwd, settings.ulma_options, settings.timeout
            )
    paired = [name for name in workloads if name in READINGS_WORKLOADS]
    if with_ulma and paired:
        progress(f"  CPU readings: paired in-process rounds on {', '.join(paired)}")
        result.readings, error = readings_cost(interp.executable, settings.cwd, paired)
        result.readings_note = error
    if with_ulma:
        progress(f"  drain benchmark: bench_drain({drain_events:,}), best of {drain_repeat}")
        result.drain_rates, error = drain_rates(interp.executable, settings.cwd, drain_events, drain_repeat)
        result.drain_note = error or f"bench_drain({drain_events:,}), best of {drain_repeat}"
    elif "ulma" in interp.tools:
        result.drain_note = "not measured: the ulma mode was not selected"
    else:
        result.drain_note = f"ulma not importable: {interp.errors.get('ulma', 'not installed')}"


def bench_all(args: argparse.Namespace, settings: Settings, results: list[PythonResult]) -> None:
    """Measure each interpreter in turn, appending to `results` as soon as one starts."""
    modes = select_modes(args.modes)
    for python in args.python or [sys.executable]:
        if args.install:
            for failed in install(python):
                progress(f"warning: install failed: {failed}")
        try:
            interp = probe(python, settings.cwd)
        except ProbeError as exc:
            progress(f"skipping {exc}")
            continue
        progress(describe(interp))
        results.append(PythonResult(interp, modes))
        bench_python(results[-1], args.workloads, settings, args.drain_events, 1 if args.quick else 3)


def describe(interp: Interpreter) -> str:
    tools = ", ".join(f"{name} {version}" for name, version in sorted(interp.tools.items())) or "none"
    return f"Python {interp.version} at {interp.executable}; tools: {tools}"


def meta(args: argparse.Namespace, rounds: int, warmup: bool, interrupted: bool) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rounds": rounds,
        "warmup": warmup,
        "workloads": args.workloads,
        "interrupted": interrupted,
        "argv": sys.argv,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rounds = args.repeat or (QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS)
    warmup = not args.quick
    ulma_options = ("--ring-size", args.ring_size) if args.ring_size else ()
    results: list[PythonResult] = []
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="ulma-bench-") as scratch:
        settings = Settings(rounds, warmup, args.timeout, Path(scratch), ulma_options)
        try:
            bench_all(args, settings, results)
        except KeyboardInterrupt:
            interrupted = True  # still print and save what was measured so far
            progress("interrupted: results below are partial")
    print(render(results, rounds))
    if args.json_out:
        args.json_out.write_text(
            json.dumps(to_json(results, meta(args, rounds, warmup, interrupted)), indent=2)
        )
        progress(f"results written to {args.json_out}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
