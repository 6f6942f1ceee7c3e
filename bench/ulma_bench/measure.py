"""Running workloads as subprocesses, interleaved round by round, and the ratios between modes."""

import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .modes import PLAIN, Mode, command

_SECONDS_RE = re.compile(r"^BENCH_SECONDS=([0-9.eE+-]+)\s*$", re.MULTILINE)
_CHECK_RE = re.compile(r"^BENCH_CHECK=(\S*)\s*$", re.MULTILINE)
MIN_OVERHEAD = 0.05  # below this a mode's overhead is indistinguishable from noise here


@dataclass
class Run:
    seconds: float | None  # the workload's own timing of its work (what ratios use)
    wall: float  # the whole subprocess, interpreter and profiler start-up included
    check: str | None = None  # the workload's result digest, to catch a profiler changing behaviour
    error: str | None = None


@dataclass
class Series:
    """One mode on one workload: runs[i] is round i, None where the mode was no longer run."""

    runs: list[Run | None] = field(default_factory=list)
    error: str | None = None  # why the mode stopped being run

    def seconds(self) -> list[float]:
        return [run.seconds for run in self.runs if run is not None and run.seconds is not None]


@dataclass
class Ratio:
    median: float
    low: float
    high: float
    rounds: int


@dataclass
class Settings:
    rounds: int
    warmup: bool
    timeout: float
    cwd: Path  # an empty scratch directory, so no run picks up or leaves files in the repo
    ulma_options: tuple[str, ...] = ()


Progress = Callable[[str], None]


def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"  # same dict and set layouts in every run and mode
    return env


def run_once(cmd: list[str], settings: Settings) -> Run:
    start = time.perf_counter()
    try:
        done = subprocess.run(
            cmd,
            check=False,
            cwd=settings.cwd,
            env=bench_env(),
            capture_output=True,
            text=True,
            timeout=settings.timeout,
        )
    except subprocess.TimeoutExpired:
        return Run(
            None,
            time.perf_counter() - start,
            error=f"timed out after {settings.timeout:.0f} s",
        )
    wall = time.perf_counter() - start
    seconds = _SECONDS_RE.findall(done.stderr)
    checks = _CHECK_RE.findall(done.stderr)
    if done.returncode != 0 or not seconds:
        return Run(None, wall, error=_describe_failure(done))
    return Run(float(seconds[-1]), wall, checks[-1] if checks else None)


def _describe_failure(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in done.stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    if done.returncode != 0:
        return f"exit code {done.returncode}: {last}"
    return f"no BENCH_SECONDS line: {last}"


def run_rounds(
    python: str,
    workload: str,
    modes: tuple[Mode, ...],
    settings: Settings,
    progress: Progress,
) -> dict[str, Series]:
    """Run every mode once per round, in order, so slow drifts of the machine hit all modes alike.

    A mode that fails or changes the workload's result is reported and not run again; if plain
    fails there is nothing to compare with and the workload stops.
    """
    series = {mode.key: Series() for mode in modes}
    if settings.warmup:
        _warm_up(python, workload, modes, settings, series, progress)
    for index in range(settings.rounds):
        if series[PLAIN.key].error:
            break
        runs = _one_round(python, workload, modes, settings, series)
        progress(_round_line(workload, index, settings.rounds, modes, runs))
    return series


def _warm_up(
    python: str,
    workload: str,
    modes: tuple[Mode, ...],
    settings: Settings,
    series: dict[str, Series],
    progress: Progress,
) -> None:
    """One discarded round: warms caches and the CPU clock, and finds broken modes early."""
    for mode in modes:
        if series[PLAIN.key].error:
            return
        run = run_once(command(mode, python, workload, settings.ulma_options), settings)
        if run.error:
            series[mode.key].error = run.error
    progress(f"  {workload}: warm-up done")


def _one_round(
    python: str,
    workload: str,
    modes: tuple[Mode, ...],
    settings: Settings,
    series: dict[str, Series],
) -> dict[str, Run]:
    runs: dict[str, Run] = {}
    for mode in modes:
        entry = series[mode.key]
        if entry.error:
            entry.runs.append(None)
            continue
        run = run_once(command(mode, python, workload, settings.ulma_options), settings)
        plain = runs.get(PLAIN.key)  # None while running plain itself, which comes first
        if plain and plain.error is None and run.error is None and run.check != plain.check:
            run.error = f"result differs from plain: {run.check!r} != {plain.check!r}"
            run.seconds = None
        entry.runs.append(run)
        entry.error = run.error
        runs[mode.key] = run
    return runs


def _round_line(workload: str, index: int, total: int, modes: tuple[Mode, ...], runs: dict[str, Run]) -> str:
    cells = []
    for mode in modes:
        run = runs.get(mode.key)
        if run is not None:
            cells.append(
                f"{mode.label} {run.seconds:.3f}s" if run.seconds is not None else f"{mode.label} FAIL"
            )
    return f"  {workload}: round {index + 1}/{total}: " + ", ".join(cells)


def ratios(plain: Series, other: Series) -> list[float]:
    """Mode time / plain time per round where both ran: each pair shares the machine's state."""
    values = []
    for base, run in zip(plain.runs, other.runs, strict=False):
        if base is not None and run is not None and base.seconds and run.seconds is not None:
            values.append(run.seconds / base.seconds)
    return values


def summarize(values: list[float]) -> Ratio | None:
    if not values:
        return None
    return Ratio(statistics.median(values), min(values), max(values), len(values))


def overhead_share(ours: Ratio | None, other: Ratio | None) -> float | None:
    """(ours - 1) / (other - 1): how much of the other tool's overhead ulma costs.

    Undefined when the other's overhead is within noise of zero (a floor on a waiting workload):
    dividing by a few hundredths would turn run-to-run noise into a huge or negative share.
    """
    if ours is None or other is None or other.median - 1.0 < MIN_OVERHEAD:
        return None
    return (ours.median - 1.0) / (other.median - 1.0)
