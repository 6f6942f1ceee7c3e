"""`ulma export --format pstats`: pstats.Stats loads the file, and its ncalls equal cProfile's.

Every program of the call-count corpus is recorded with `ulma record`, exported, and loaded with
pstats.Stats; the reference is cProfile on the same program (on 3.11, for the threaded program, one
cProfile per thread merged: programs/_cprofile_all_threads.py). Times must agree with the report
of the same recording.
"""

from __future__ import annotations

import pstats
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_process
from tests.exporters.conftest import PROGRAMS_DIR, Recording

# (program, threads): the corpus of tests/integration/test_call_counts.py
CORPUS = [
    ("deep_recursion.py", 1), ("mutual_recursion.py", 1), ("exceptions.py", 1), ("generators.py", 1),
    ("abandoned_generator.py", 1), ("context_managers.py", 1), ("decorators.py", 1),
    ("classes_properties.py", 1), ("threads.py", 5), ("sys_exit_deep.py", 1),
    ("uncaught_exception.py", 1), ("async_coroutines.py", 1), ("generator_split.py", 1),
]

Key = tuple[int, str]  # (first line, co_name)
StatsRow = tuple[int, int, float, float, dict[tuple[str, int, str], tuple[int, int, float, float]]]


def load(path: Path) -> dict[tuple[str, int, str], StatsRow]:
    stats: dict[tuple[str, int, str], StatsRow] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    return stats


def by_line_and_name(stats: dict[tuple[str, int, str], StatsRow], program: Path
                     ) -> dict[Key, tuple[int, int]]:
    """(ncalls, primitive calls) of the functions defined in `program`, keyed like cProfile's
    (ulma writes qualified names; cProfile co_name, the last part)."""
    out: dict[Key, tuple[int, int]] = {}
    for (file, line, name), (cc, nc, *_rest) in stats.items():
        if file != "~" and Path(file).resolve() == program.resolve():
            key = (line, name.rsplit(".", 1)[-1])
            old = out.get(key, (0, 0))
            out[key] = (old[0] + nc, old[1] + cc)
    return out


def cprofile(program: Path, threads: int, folder: Path) -> dict[tuple[str, int, str], StatsRow]:
    prof = folder / f"{program.stem}.prof"
    if threads > 1 and sys.version_info < (3, 12):
        profiler = [str(PROGRAMS_DIR / "_cprofile_all_threads.py"), str(prof)]
    else:
        profiler = ["-m", "cProfile", "-o", str(prof)]
    result = run_process([sys.executable, *profiler, str(program)], cwd=PROGRAMS_DIR)
    assert prof.exists(), f"cProfile wrote no stats:\n{result.stderr}"
    return load(prof)


@pytest.mark.parametrize(("program", "threads"), CORPUS, ids=[p.removesuffix(".py") for p, _ in CORPUS])
def test_pstats_export_loads_and_its_ncalls_equal_cprofiles(
    program: str, threads: int, tmp_path: Path,
    record: Callable[[str], Recording], export: Callable[[Recording, str], Path],
) -> None:
    recording = record(program)
    assert recording.report["dropped"] == 0, "events were dropped: counts cannot be exact"
    ours = by_line_and_name(load(export(recording, "pstats")), recording.program)
    reference = by_line_and_name(cprofile(recording.program, threads, tmp_path), recording.program)
    resumed = {(f["line"], f["name"].rsplit(".", 1)[-1]) for f in recording.report["functions"]
               if f["resumes"]}
    problems = []
    for key in sorted(set(ours) | set(reference)):
        (nc, cc), (ref_nc, ref_cc) = ours.get(key, (0, 0)), reference.get(key, (0, 0))
        if nc != ref_nc:
            problems.append(f"{key[1]} (line {key[0]}): ncalls cProfile {ref_nc}, ulma {nc}")
        # Primitive calls follow recursion. cProfile on 3.12+ keeps one recursion level for
        # all threads (ulma, like _lsprof per thread, one per thread), and on 3.11 a
        # suspended coroutine can stay "active" in its C hook: compared where both are plain.
        elif threads == 1 and key not in resumed and cc != ref_cc:
            problems.append(f"{key[1]} (line {key[0]}): primitive calls cProfile {ref_cc}, ulma {cc}")
    assert not problems, "pstats export differs from cProfile:\n  " + "\n  ".join(problems)


def test_pstats_times_and_callers_match_the_report(
    record: Callable[[str], Recording], export: Callable[[Recording, str], Path],
) -> None:
    recording = record("generators.py")
    stats = load(export(recording, "pstats"))
    report: dict[str, Any] = recording.report
    functions = {(f["file"], f["line"], f["name"]): f for f in report["functions"]}
    assert set(stats) == set(functions)
    # ticks become whole ns per frame boundary in the export and per total in the report, so
    # a figure may differ by up to a ns per activation involved in it
    slack = (2 * sum(row[1] for row in stats.values()) + 2) / 1e9
    for key, (_cc, nc, tt, ct, callers) in stats.items():
        f = functions[key]
        assert nc == f["calls"] + f["resumes"], key
        assert abs(tt - f["self_ns"] / 1e9) <= slack, key
        assert abs(ct - f["total_ns"] / 1e9) <= slack, key
        assert sum(c[0] for c in callers.values()) <= nc
    index = list(functions)
    for edge in report["edges"]:
        caller, callee = index[edge["caller"]], index[edge["callee"]]
        ncalls, _prim, _tt, cum = stats[callee][4][caller]
        assert ncalls == edge["calls"] + edge["resumes"]
        assert abs(cum - edge["total_ns"] / 1e9) <= slack
    # the standard library reads it like a cProfile dump
    listing = pstats.Stats(str(export(recording, "pstats")), stream=open("/dev/null", "w"))  # noqa: SIM115
    listing.sort_stats("cumulative").print_stats(5)
    listing.print_callers("numbers")
