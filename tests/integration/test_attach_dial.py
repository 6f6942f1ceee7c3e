"""The dial on `ulma attach`: `--budget` and `--burst` as on `ulma run`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AgentTarget, agent_target
from tests.integration.test_attach import TARGET, RunFn, attach_json


@pytest.fixture
def target(tmp_path: Path) -> Iterator[AgentTarget]:
    with agent_target(TARGET, tmp_path) as t:
        yield t


def ticks(report: dict[str, Any]) -> dict[str, Any]:
    (tick,) = [f for f in report["functions"] if f["name"] == "tick"]
    return tick  # type: ignore[no-any-return]


def test_attach_budget_switches_the_hot_short_function_off_and_the_program_goes_on(
        target: AgentTarget, run_ulma: RunFn, tmp_path: Path) -> None:
    report: dict[str, Any] = attach_json(run_ulma, target.proc.pid, tmp_path / "a.json", 1.5,
                                         "--budget", "1")
    dial = report["dial"]
    assert dial is not None and dial["budget"] == 1
    # tick: 200 calls of a few hundred ns between two 1 ms sleeps, what a 1 % budget cannot afford
    (sw,) = [sw for sw in dial["switched_off"] if sw["function"] == "tick"]
    assert sw["calls"] is not None and 0 < sw["calls"] <= ticks(report)["calls"]
    assert ticks(report)["off"]
    code, out, _ = target.finish()
    assert code == 3 and out.startswith("ticks=")


def test_attach_burst_marks_the_counts_sampled(target: AgentTarget, run_ulma: RunFn, tmp_path: Path) -> None:
    full: dict[str, Any] = attach_json(run_ulma, target.proc.pid, tmp_path / "full.json", 1.0)
    burst: dict[str, Any] = attach_json(run_ulma, target.proc.pid, tmp_path / "burst.json", 1.0,
                                        "--burst", "20:200")
    assert full["burst"] is None
    assert burst["burst"] == {"sampled": True, "on_ms": 20, "period_ms": 200,
                              "calls_scaled": "calls seen / the part of the run the function was on"}
    seen, whole = ticks(burst)["calls"], ticks(full)["calls"]
    # on a tenth of the time: far fewer calls seen than in as long fully traced, and the scaled
    # estimate beside them larger than what was seen
    assert 0 < seen < whole / 2, (seen, whole)
    assert ticks(burst)["calls_scaled"] > seen


def test_attach_refuses_budget_with_burst_in_one_line(target: AgentTarget, run_ulma: RunFn) -> None:
    result = run_ulma(["attach", str(target.proc.pid), "--budget", "5", "--burst", "10:100"])
    assert result.returncode == 2
    assert result.stderr == ("ulma: error: --burst and --budget cannot go together: "
                             "both switch functions off and on\n")
