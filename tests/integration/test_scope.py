"""Scope from the start: `ulma run --only PATTERN` traces only what matches,
`--exclude PATTERN` everything but; what stays traced is counted exactly as
cProfile counts it (cProfile runs the same program in a separate process),
and what is left out gets no row at all."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "scoped.py"
PACKAGE = [PROGRAMS_DIR / "scopedpkg" / "__init__.py", PROGRAMS_DIR / "scopedpkg" / "work.py"]

Key = tuple[int, str]
Completed = Any


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[Path, dict[Key, int]]]:
    """The plain run's output and cProfile's counts per file of the program and its package."""
    import subprocess
    import sys

    from tests.conftest import _cprofile_counts, subprocess_env

    plain = subprocess.run([sys.executable, str(PROGRAM)], cwd=PROGRAMS_DIR, capture_output=True,
                           text=True, timeout=120, env=subprocess_env(), check=True)
    prof = tmp_path_factory.mktemp("scope") / "reference.prof"
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), str(PROGRAM)], cwd=PROGRAMS_DIR,
                   capture_output=True, text=True, timeout=120, env=subprocess_env(), check=True)
    return plain.stdout, {f: _cprofile_counts(prof, f) for f in (PROGRAM, *PACKAGE)}


def readings(report: Mapping[str, Any]) -> int:
    """At most the records a run makes beside calls and returns: two CPU readings per
    100 us interval (the default), and a few stack restatements."""
    return 2 * int(report["wall_ns"]) // 100_000 + 100


def mismatches(want: Mapping[Key, int], got: Mapping[Key, Mapping[str, Any]]) -> list[str]:
    out = []
    for key in sorted(set(want) | set(got)):
        fn = got.get(key)
        n = fn["calls"] + fn["resumes"] if fn else 0
        if want.get(key, 0) != n:
            out.append(f"{key}: cProfile {want.get(key, 0)}, ulma {n}")
    return out


@pytest.mark.parametrize("pattern", ["scopedpkg", "*/scopedpkg/*"])
def test_only_traces_the_chosen_package_with_cprofiles_counts(
    pattern: str, engine_flags: list[str], reference: tuple[str, dict[Path, dict[Key, int]]],
    ulma_json: Callable[..., tuple[Completed, dict[str, Any]]],
    ulma_functions: Callable[[Mapping[str, Any], Path], dict[Key, dict[str, Any]]],
) -> None:
    stdout, counts = reference
    result, report = ulma_json([*engine_flags, "--no-report", "--only", pattern, str(PROGRAM)],
                               cwd=PROGRAMS_DIR)
    assert result.returncode == 0 and result.stdout == stdout, result.stderr
    assert report["dropped"] == 0
    assert report["scope"] == [f"--only {pattern}"]
    # the package's functions, each exactly as often as cProfile saw it ...
    for f in PACKAGE:
        assert counts[f], f
        problems = mismatches(counts[f], ulma_functions(report, f))
        assert not problems, problems
    # ... and nothing else: no row, no event of the program's other functions
    assert not ulma_functions(report, PROGRAM)
    files = {fn["file"] for fn in report["functions"]}
    assert files <= {str(f) for f in PACKAGE}, files
    traced = sum(n for f in PACKAGE for n in counts[f].values())
    assert report["events"] <= 2 * traced + readings(report), (report["events"], traced)


def test_exclude_leaves_out_what_matches_and_counts_the_rest_exactly(
    engine_flags: list[str], reference: tuple[str, dict[Path, dict[Key, int]]],
    ulma_json: Callable[..., tuple[Completed, dict[str, Any]]],
    ulma_functions: Callable[[Mapping[str, Any], Path], dict[Key, dict[str, Any]]],
) -> None:
    stdout, counts = reference
    result, report = ulma_json([*engine_flags, "--no-report", "--exclude", "*/scopedpkg/*",
                                "--exclude", "other", str(PROGRAM)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0 and result.stdout == stdout, result.stderr
    assert report["dropped"] == 0
    assert report["scope"] == ["--exclude */scopedpkg/*", "--exclude other"]
    for f in PACKAGE:
        assert not ulma_functions(report, f)
    want = {key: n for key, n in counts[PROGRAM].items() if key[1] != "other"}
    problems = mismatches(want, ulma_functions(report, PROGRAM))
    assert not problems, problems
    # zero-cost: an excluded function's calls write no event (other makes most of the calls)
    traced = sum(want.values())
    assert report["events"] <= 2 * traced + readings(report), (report["events"], traced)
