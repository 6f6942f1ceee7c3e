"""Ground-truth timing: known sleeps and known call structure (programs/timing_sleep.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "timing_sleep.py"
MS = 1_000_000

Completed = subprocess.CompletedProcess[str]
UlmaJson = Callable[..., tuple[Completed, dict[str, Any]]]
FunctionNamed = Callable[[Mapping[str, Any], Path, str], tuple[int, dict[str, Any]]]


def tolerance(total_ns: int) -> int:
    """What self + callees may differ from total by: 1 ms or 1 %, whichever is larger."""
    return max(1 * MS, total_ns // 100)


def callee_edges(report: Mapping[str, Any], caller: int) -> list[dict[str, Any]]:
    return [edge for edge in report["edges"] if edge["caller"] == caller]


def fib_calls(n: int) -> int:
    return 1 if n < 2 else 1 + fib_calls(n - 1) + fib_calls(n - 2)


def test_function_sleeping_50ms_ten_times_shows_10_calls_and_about_500ms_total(
    engine_flags: list[str],
    ulma_json: UlmaJson,
    function_named: FunctionNamed,
    describe: Callable[[Completed], str],
) -> None:
    result, report = ulma_json([*engine_flags, "--no-report", str(PROGRAM)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    main_index, _ = function_named(report, PROGRAM, "main")
    nap_index, nap = function_named(report, PROGRAM, "nap")
    assert (nap["calls"], nap["resumes"]) == (10, 0)
    assert 450 * MS <= nap["total_ns"] <= 650 * MS, f"nap total {nap['total_ns'] / MS:.1f} ms"
    edge = [e for e in report["edges"] if (e["caller"], e["callee"]) == (main_index, nap_index)]
    assert len(edge) == 1, f"edges main -> nap: {edge}"
    assert edge[0]["calls"] == 10
    assert abs(edge[0]["total_ns"] - nap["total_ns"]) <= tolerance(nap["total_ns"]), (edge, nap)


def test_self_plus_callee_edges_adds_up_to_total(
    engine_flags: list[str],
    ulma_json: UlmaJson,
    function_named: FunctionNamed,
    describe: Callable[[Completed], str],
) -> None:
    result, report = ulma_json([*engine_flags, "--no-report", str(PROGRAM)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    for name in ("main", "nap", "spin"):
        index, fn = function_named(report, PROGRAM, name)
        callees = sum(edge["total_ns"] for edge in callee_edges(report, index))
        assert abs(fn["self_ns"] + callees - fn["total_ns"]) <= tolerance(fn["total_ns"]), (
            f"{name}: self {fn['self_ns']} + callees {callees} != total {fn['total_ns']}"
        )
    main_index, main = function_named(report, PROGRAM, "main")
    callee_names = {report["functions"][edge["callee"]]["name"] for edge in callee_edges(report, main_index)}
    assert {"nap", "fib", "spin"} <= callee_names
    _, spin = function_named(report, PROGRAM, "spin")
    assert spin["total_ns"] >= 95 * MS, f"spin ran for 100 ms, ulma says {spin['total_ns'] / MS:.1f} ms"
    assert main["total_ns"] >= 600 * MS, (
        f"main slept 500 ms, spun 100 ms; ulma: {main['total_ns'] / MS:.1f} ms"
    )


def test_recursive_function_total_counts_the_outermost_call_only(
    engine_flags: list[str],
    ulma_json: UlmaJson,
    function_named: FunctionNamed,
    describe: Callable[[Completed], str],
) -> None:
    result, report = ulma_json([*engine_flags, "--no-report", str(PROGRAM)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    main_index, main = function_named(report, PROGRAM, "main")
    fib_index, fib = function_named(report, PROGRAM, "fib")
    assert fib["calls"] == fib_calls(18)
    edge = [e for e in report["edges"] if (e["caller"], e["callee"]) == (main_index, fib_index)]
    assert len(edge) == 1 and edge[0]["calls"] == 1, edge
    # fib is entered from main once; every other call is recursive, so its total is that one call's time.
    assert abs(fib["total_ns"] - edge[0]["total_ns"]) <= tolerance(fib["total_ns"]), (fib, edge)
    assert fib["self_ns"] <= fib["total_ns"] <= main["total_ns"]


def test_times_fit_in_the_run(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str]
) -> None:
    result, report = ulma_json([*engine_flags, "--no-report", str(PROGRAM)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    wall = report["wall_ns"]
    assert wall >= 600 * MS
    functions = report["functions"]
    assert sum(fn["self_ns"] for fn in functions) <= wall  # one thread: self times cannot overlap
    for fn in functions:
        assert 0 <= fn["self_ns"] <= fn["total_ns"] <= wall, fn
    for edge in report["edges"]:
        assert 0 <= edge["total_ns"] <= wall, edge
