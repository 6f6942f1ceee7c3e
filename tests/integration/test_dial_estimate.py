"""The dial's estimate of ulma's overhead follows the overhead the program
itself measures: tests/programs/priced.py times one recursive function traced
and a copy of it left out (`--exclude`, as good as switched off) in turns, in
its thread's CPU time, under `ulma run --budget 100` (a budget it stays under,
so nothing is switched off).  From those times the overhead of the whole run
is known without the dial; the dial's windows, once its measured
price of an event came, must estimate it within a factor of 1.6 either way.
(The start-up probe cost the dial used before read 0.36-0.62x of it in 6 of
7 runs on a busy machine, 0.91x once.)"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.test_dial import PROGRAMS_DIR

PROGRAM = PROGRAMS_DIR / "priced.py"
SECONDS = "4"
FACTOR = 1.6


def test_budget_estimate_tracks_the_overhead_the_program_measures_itself(
    engine_flags: list[str], ulma_json: Callable[..., tuple[Any, dict[str, Any]]], tmp_path: Path,
) -> None:
    result, report = ulma_json([*engine_flags, "--no-report", "--exclude", "fib_plain", "--budget", "100",
                                str(PROGRAM), SECONDS], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    dial = report["dial"]
    # the whole run stayed traced as the program measured it
    assert not dial["switched_off"], (dial["switched_off"], dial["event_ns"], dial["priced_at_s"],
                                      dial["history"])
    priced_at = dial.get("priced_at_s")
    assert priced_at is not None, dial.get("price_error")
    # what the traced calls took beyond as many untraced ones (means: as the dial's windows,
    # they include what preemption costs the caches), over what the run would take without
    # it: the dial's estimate is that, % of the plain run
    on, off = measured["on_ns"] / measured["on_n"], measured["off_ns"] / measured["off_n"]
    assert on > off, measured
    cost = measured["on_n"] * (on - off)
    expected = 100 * cost / (measured["on_ns"] + measured["off_ns"] - cost)
    points = [pct for t, pct in dial["history"] if t > priced_at]
    assert len(points) >= 10, dial["history"]
    estimate = statistics.median(points)
    assert expected / FACTOR <= estimate <= expected * FACTOR, (
        f"estimated {estimate:.1f}% (median of {len(points)} windows), measured {expected:.1f}% "
        f"(traced {on / measured['calls']:.1f} ns a call, left out {off / measured['calls']:.1f}); "
        f"an event priced at {dial['event_ns']} ns, measured {(on - off) / (2 * measured['calls']):.1f}")
