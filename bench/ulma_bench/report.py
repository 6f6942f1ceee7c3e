"""Results of a bench run: the plain-text tables people read and the JSON machines keep."""

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from .measure import MIN_OVERHEAD, Ratio, Series, overhead_share, ratios, summarize
from .modes import PLAIN, Mode
from .probe import EventCounts, Interpreter

# Targets from the design (issue 2): ulma's overhead as a share of the other's overhead.
TARGET_VS_FLOOR = 1.4
TARGET_VS_RECORDING_FLOOR = 1.15  # full tracing vs hooks that only read the clock and store 16 bytes
TARGET_VS_CPROFILE = 0.5
TARGET_VS_VIZTRACER = 1.0
TARGET_DRAIN = 50e6
TARGET_CPU_READINGS = 0.03  # what telling CPU from waiting may add to ulma (issue 4)
READINGS_WORKLOADS = ("fib", "mix")  # where readings.py pairs runs with and without them
BUSY_CPUS = 0.2  # CPUs used by other processes during a workload's rounds worth a warning


@dataclass
class WorkloadResult:
    name: str
    series: dict[str, Series]
    counts: EventCounts | None = None
    others_cpus: float | None = None  # CPUs other processes used meanwhile (noise indicator)

    def ratio(self, key: str) -> Ratio | None:
        if key not in self.series or PLAIN.key not in self.series:
            return None
        return summarize(ratios(self.series[PLAIN.key], self.series[key]))

    def plain_seconds(self) -> float | None:
        seconds = self.series[PLAIN.key].seconds()
        return statistics.median(seconds) if seconds else None


@dataclass
class PythonResult:
    interpreter: Interpreter
    modes: tuple[Mode, ...]
    workloads: list[WorkloadResult] = field(default_factory=list)
    drain_rates: dict[str, float] = field(default_factory=dict)  # stream shape -> events/s
    drain_note: str | None = None  # why there is no rate, or how it was measured
    # readings.py: workload -> {"ratios": [...], "readings", "cost_ns", "share"}
    readings: dict[str, dict[str, Any]] = field(default_factory=dict)
    readings_note: str | None = None  # why it failed

    def unavailable(self, mode: Mode) -> str | None:
        """Why this interpreter cannot run the mode, or None if it can."""
        missing = mode.needs - self.interpreter.capabilities()
        if not missing:
            return None
        if missing == {"monitoring"}:
            return "needs Python 3.12+"
        tool = min(missing - {"monitoring"})
        return f"{tool} not importable ({self.interpreter.errors.get(tool, 'not installed')})"


# --- text -------------------------------------------------------------------------------


def render(results: list[PythonResult], rounds: int) -> str:
    return "\n\n".join(_render_python(result, rounds) for result in results)


def _render_python(result: PythonResult, rounds: int) -> str:
    interp = result.interpreter
    parts = [
        f"== Python {interp.version} ({interp.executable}) ==",
        f"Wall-time ratio to plain: median of {rounds} interleaved rounds [min-max], lower is better.",
        _table(*_ratio_table(result)),
    ]
    if any(mode.key == "ulma" for mode in result.modes):
        parts += [
            "",
            "ulma overhead = ratio-1; 'vs X' = ulma's overhead / X's overhead (target in brackets).",
            _table(*_overhead_table(result)),
            *_recording_floor_lines(result),
            "",
            *_readings_lines(result),
            _drain_line(result),
        ]
    notes = _notes(result)
    if notes:
        parts += ["", "Notes:", *notes]
    return "\n".join(parts)


def _ratio_table(result: PythonResult) -> tuple[list[str], list[list[str]]]:
    shown = [mode for mode in result.modes if mode.key != PLAIN.key]
    headers = ["workload", "plain s", *(mode.label for mode in shown), "others"]
    rows = []
    for workload in result.workloads:
        plain = workload.plain_seconds()
        row = [workload.name, f"{plain:.3f}" if plain is not None else "fail"]
        row += [_ratio_cell(result, workload, mode) for mode in shown]
        row.append(f"{workload.others_cpus:.2f}" if workload.others_cpus is not None else "n/a")
        rows.append(row)
    return headers, rows


def _ratio_cell(result: PythonResult, workload: WorkloadResult, mode: Mode) -> str:
    if result.unavailable(mode):
        return "n/a"
    ratio = workload.ratio(mode.key)
    if ratio is None:
        return "fail"
    mark = "*" if workload.series[mode.key].error else ""  # failed in a later round: see notes
    return f"{ratio.median:.2f}x [{ratio.low:.2f}-{ratio.high:.2f}]{mark}"


# The comparisons of the second table: (mode, target for ulma's share, must be strictly below).
COMPARISONS: tuple[tuple[str, float, bool], ...] = (
    ("cprofile", TARGET_VS_CPROFILE, False),
    ("viztracer", TARGET_VS_VIZTRACER, True),
    ("floor_monitoring", TARGET_VS_FLOOR, False),
    ("floor_pep523", TARGET_VS_FLOOR, False),
    ("recording_floor", TARGET_VS_RECORDING_FLOOR, False),
)


def _overhead_table(result: PythonResult) -> tuple[list[str], list[list[str]]]:
    selected = {mode.key: mode for mode in result.modes}
    shown = [(selected[key], target, strict) for key, target, strict in COMPARISONS if key in selected]
    headers = ["workload", "ulma ovh"]
    headers += [f"vs {mode.label} ({'<' if strict else '<='}{target})" for mode, target, strict in shown]
    headers += ["events", "dropped"]
    rows = []
    for workload in result.workloads:
        ours = workload.ratio("ulma")
        counts = workload.counts or EventCounts(error="not measured")
        row = [workload.name, f"{ours.median - 1.0:+.2f}" if ours else "n/a"]
        row += [_share_cell(ours, workload.ratio(mode.key), target, strict) for mode, target, strict in shown]
        row += [_count_cell(counts.events, counts.error), _count_cell(counts.dropped, counts.error)]
        rows.append(row)
    return headers, rows


def _share_cell(ours: Ratio | None, other: Ratio | None, target: float, strict: bool) -> str:
    if ours is None or other is None:
        return "n/a"
    share = overhead_share(ours, other)
    if share is None:
        return f"- (<{MIN_OVERHEAD})"  # the other's overhead is within noise: no share to quote
    met = share < target if strict else share <= target
    return f"{share:.2f} {'ok' if met else 'MISS'}"


def _recording_floor_lines(result: PythonResult) -> list[str]:
    """Full tracing next to the recording floor (the same engine's hooks doing only a clock read
    and one 16-byte store): what ulma's recording costs beyond the least any recorder pays."""
    if not any(mode.key == "recording_floor" for mode in result.modes):
        return []
    lines = []
    for workload in result.workloads:
        ours, floor = workload.ratio("ulma"), workload.ratio("recording_floor")
        if ours is None or floor is None:
            continue
        share = overhead_share(ours, floor)
        verdict = "n/a (floor within noise)" if share is None else (
            f"{share:.2f}x the floor's overhead, target <= {TARGET_VS_RECORDING_FLOOR}: "
            f"{'ok' if share <= TARGET_VS_RECORDING_FLOOR else 'MISS'}")
        others = "n/a" if workload.others_cpus is None else f"{workload.others_cpus:.2f}"
        lines.append(f"Full tracing vs recording floor on {workload.name}: ulma {ours.median - 1.0:+.2f}, "
                     f"floor {floor.median - 1.0:+.2f} overhead; ulma = {verdict} (others {others} CPU)")
    return lines


def _readings_lines(result: PythonResult) -> list[str]:
    """What CPU readings cost, from readings.py: the paired wall-time ratio and, exactly, the
    time the readings themselves took (the gaps they leave in the stream)."""
    if result.readings_note:
        return [f"CPU readings: n/a ({result.readings_note})"]
    lines = []
    for name, r in result.readings.items():
        ratio = statistics.median(r["ratios"])
        share = float(r["share"])
        verdict = "ok" if max(ratio - 1.0, share) <= TARGET_CPU_READINGS else "MISS"
        lines.append(
            f"CPU readings on {name}: {ratio - 1.0:+.1%} wall (median of {len(r['ratios'])} paired "
            f"in-process rounds, each {min(r['ratios']):.2f}-{max(r['ratios']):.2f}); "
            f"{r['readings']:,.0f} readings of "
            f"{r['cost_ns'] / 1000:.2f} us measured = {share:.2%} of the run; "
            f"target <= +{TARGET_CPU_READINGS:.0%}: {verdict}")
    return lines


def _count_cell(value: int | None, error: str | None) -> str:
    if value is None:
        return "fail" if error and error != "not measured" else "n/a"
    return f"{value:,}"


def _drain_line(result: PythonResult) -> str:
    if not result.drain_rates:
        return f"Monitor drain + aggregate: n/a ({result.drain_note or 'not measured'})"
    rates = ", ".join(
        f"{rate / 1e6:.1f} M events/s ({shape} stream)" for shape, rate in result.drain_rates.items()
    )
    # The target holds only if the monitor keeps up with every stream shape, so judge the slowest.
    verdict = "ok" if min(result.drain_rates.values()) >= TARGET_DRAIN else "MISS"
    return (
        f"Monitor drain + aggregate: {rates}; {result.drain_note}; "
        f"target >= {TARGET_DRAIN / 1e6:.0f} M/s: {verdict}"
    )


def _notes(result: PythonResult) -> list[str]:
    return [*_busy_note(result), *_unavailable_notes(result), *_error_notes(result)]


def _busy_note(result: PythonResult) -> list[str]:
    busy = [w.name for w in result.workloads if (w.others_cpus or 0.0) > BUSY_CPUS]
    if not busy:
        return []
    return [
        f"- other processes used over {BUSY_CPUS} CPU during {', '.join(busy)} ('others' column): "
        "those ratios are noisier; rerun on a quiet machine for figures to quote"
    ]


def _unavailable_notes(result: PythonResult) -> list[str]:
    by_reason: dict[str, list[str]] = {}  # one line per reason: a missing ulma hides 3 modes
    for mode in result.modes:
        reason = result.unavailable(mode)
        if reason:
            by_reason.setdefault(reason, []).append(mode.label)
    return [f"- {', '.join(labels)}: n/a, {reason}" for reason, labels in by_reason.items()]


def _error_notes(result: PythonResult) -> list[str]:
    notes = []
    for workload in result.workloads:
        for mode in result.modes:
            series = workload.series.get(mode.key)
            if series and series.error:
                notes.append(f"- {mode.label} on {workload.name}: {series.error}")
        if workload.counts and workload.counts.error:
            notes.append(f"- ulma --json run on {workload.name}: {workload.counts.error}")
    return notes


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        # First column names the row, so it reads best left-aligned; numbers align right.
        return "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


# --- JSON -------------------------------------------------------------------------------


def to_json(results: list[PythonResult], meta: dict[str, Any]) -> dict[str, Any]:
    return {"meta": meta, "pythons": [_python_json(result) for result in results]}


def _python_json(result: PythonResult) -> dict[str, Any]:
    return {
        "interpreter": asdict(result.interpreter),
        "drain_events_per_s": result.drain_rates,
        "drain_note": result.drain_note,
        "cpu_readings": result.readings,
        "cpu_readings_note": result.readings_note,
        "unavailable": {
            mode.key: result.unavailable(mode) for mode in result.modes if result.unavailable(mode)
        },
        "workloads": {workload.name: _workload_json(workload) for workload in result.workloads},
    }


def _workload_json(workload: WorkloadResult) -> dict[str, Any]:
    modes = {}
    for key, series in workload.series.items():
        ratio = workload.ratio(key)
        modes[key] = {
            "seconds": [run.seconds if run else None for run in series.runs],
            "wall": [run.wall if run else None for run in series.runs],
            "ratio": asdict(ratio) if ratio else None,
            "error": series.error,
        }
    ours = workload.ratio("ulma")
    return {
        "modes": modes,
        "ulma_overhead_share": {
            other: overhead_share(ours, workload.ratio(other))
            for other in (
                "cprofile",
                "viztracer",
                "yappi",
                "floor_monitoring",
                "floor_pep523",
                "recording_floor",
            )
        },
        "ulma_counts": asdict(workload.counts) if workload.counts else None,
        "others_cpus": workload.others_cpus,
    }
