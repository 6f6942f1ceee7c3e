"""The drop path: a tiny ring forces drops; they are counted and reported, and the aggregate stays sane."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "busy_drops.py"
TINY_RING = "4K"  # below --ring-size's minimum: through the tests' hidden --test-ring-size
MS = 1_000_000
ROUNDS = 2_000  # as in busy_drops.py: each round calls fib(10) and leaf() once
FIB_10_CALLS = 177  # calls of fib to compute fib(10): c(n) = 1 + c(n - 1) + c(n - 2), c(0) = c(1) = 1

Completed = subprocess.CompletedProcess[str]
UlmaJson = Callable[..., tuple[Completed, dict[str, Any]]]
FunctionNamed = Callable[[Mapping[str, Any], Path, str], tuple[int, dict[str, Any]]]


def test_tiny_ring_drops_events_and_the_report_shows_how_many(
    engine_flags: list[str],
    ulma_json: UlmaJson,
    counts_next_to: Callable[[str, str], list[int]],
    describe: Callable[[Completed], str],
) -> None:
    result, report = ulma_json([*engine_flags, "--test-ring-size", TINY_RING, str(PROGRAM)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    assert result.stdout.splitlines()[-1] == str(sum(55 + i + 1 for i in range(2000))), describe(result)
    dropped = report["dropped"]
    assert dropped > 0, f"a {TINY_RING} ring dropped nothing\n{describe(result)}"
    shown = counts_next_to(result.stderr, "dropped")
    assert shown == [dropped], f"the report should show dropped {dropped} (as the JSON), shows {shown}"


def test_aggregate_stays_consistent_after_drops(
    engine_flags: list[str],
    ulma_json: UlmaJson,
    function_named: FunctionNamed,
    describe: Callable[[Completed], str],
) -> None:
    args = [*engine_flags, "--no-report", "--test-ring-size", TINY_RING, str(PROGRAM)]
    result, report = ulma_json(args, cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    assert report["dropped"] > 0, describe(result)
    wall = report["wall_ns"]
    functions = report["functions"]
    for fn in functions:
        assert fn["self_ns"] <= fn["total_ns"] <= wall, fn
    assert sum(fn["self_ns"] for fn in functions) <= wall  # one thread: self times cannot overlap

    # A drop loses calls, never invents them: no count above what the program made (no generators:
    # no resumes), and no edge with more calls than its callee had.
    made = {"main": 1, "busy": 1, "rest": 1, "leaf": ROUNDS, "fib": ROUNDS * FIB_10_CALLS}
    index = {name: function_named(report, PROGRAM, name)[0] for name in made}
    for name, at in index.items():
        fn = functions[at]
        assert fn["calls"] <= made[name] and fn["resumes"] == 0, (name, made[name], fn)
    into: dict[int, int] = {}
    for edge in report["edges"]:
        assert 0 <= edge["caller"] < len(functions) and 0 <= edge["callee"] < len(functions), edge
        assert edge["total_ns"] <= wall, edge
        into[edge["callee"]] = into.get(edge["callee"], 0) + edge["calls"]
    for name, at in index.items():
        assert into.get(at, 0) <= functions[at]["calls"], (name, into.get(at), functions[at])
    edge_calls = {(e["caller"], e["callee"]): e["calls"] for e in report["edges"]}
    assert edge_calls.get((index["busy"], index["leaf"]), 0) <= ROUNDS
    assert edge_calls.get((index["busy"], index["fib"]), 0) <= ROUNDS
    assert edge_calls.get((index["fib"], index["fib"]), 0) <= ROUNDS * (FIB_10_CALLS - 1)

    # No function is credited with time it never had: everything the busy phase runs must fit in the
    # busy phase (which the program timed itself), not stretch over the 300 ms sleep that follows it.
    busy_ns = int(re.search(r"^busy_ns (\d+)$", result.stdout, re.M).group(1))  # type: ignore[union-attr]
    limit = busy_ns + busy_ns // 10 + 5 * MS
    for name in ("busy", "fib", "leaf"):
        _, fn = function_named(report, PROGRAM, name)
        assert fn["total_ns"] <= limit, (
            f"{name} credited with {fn['total_ns'] / MS:.1f} ms, the busy phase lasted {busy_ns / MS:.1f} ms"
        )
