"""fork(): a forked child never writes into its parent's rings and never hangs; with --no-children it is
counted as unprofiled, without it followed (its calls in its own row, added to the merged view).

The ground truth is the program itself (programs/fork_children.py prints how many times it called
each leaf function).  A child that wrote into its parent's ring made the parent lose or gain calls
and gave a leaf function a total above its self time, with nothing dropped.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import kill_group, subprocess_env, ulma_command, wait_for_agent

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
CHILDREN = PROGRAMS_DIR / "fork_children.py"
THREAD_EXITS = PROGRAMS_DIR / "fork_thread_exits.py"
REPEATS = 3
CHILD_CALLS = 3_000  # each child's calls of child_leaf (programs/fork_children.py)
# The background thread makes ~1.5 M calls a second: a ring that holds a few seconds of them, so that
# a monitor slowed down by a busy machine drops nothing.
RING = "128M"

Completed = subprocess.CompletedProcess[str]
UlmaJson = Callable[..., tuple[Completed, dict[str, Any]]]
FunctionNamed = Callable[[Mapping[str, Any], Path, str], tuple[int, dict[str, Any]]]


def program_counts(stdout: str) -> dict[str, int]:
    """{"leaf": n, "bg_leaf": n, "forks": n} as the program printed them."""
    counts = {name: int(n) for name, n in re.findall(r"^(\w+) (\d+)$", stdout, re.M)}
    assert set(counts) == {"leaf", "bg_leaf", "forks"}, stdout
    return counts


def assert_parent_profile_exact(report: Mapping[str, Any], stdout: str, function_named: FunctionNamed,
                                why: str) -> None:
    truth = program_counts(stdout)
    assert truth["forks"] >= 25, stdout
    assert report["dropped"] == 0, why
    for name in ("leaf", "bg_leaf"):
        _, fn = function_named(report, CHILDREN, name)
        made = truth[name]
        assert fn["calls"] == made, f"{name}: ulma counted {fn['calls']}, the program made {made}\n{why}"
        # a leaf calls nothing: any time beyond its own is someone else's event in its ring
        assert fn["self_ns"] == fn["total_ns"], f"{name}: self {fn['self_ns']} total {fn['total_ns']}\n{why}"
    names = {fn["name"] for fn in report["functions"]}
    assert "child_leaf" not in names, f"a child's calls reached the parent's profile\n{why}"
    assert report["forked_children"] == truth["forks"], why


def test_forked_children_leave_the_parents_counts_exact_and_are_reported_unprofiled(
    engine_flags: list[str],
    ulma_json: UlmaJson,
    run_ulma: Callable[..., Completed],
    function_named: FunctionNamed,
    describe: Callable[[Completed], str],
    tmp_path: Path,
) -> None:
    for i in range(REPEATS):
        trace = tmp_path / f"run{i}.ulma"
        result, report = ulma_json([*engine_flags, "--no-children", "--ring-size", RING, "-o", str(trace),
                                    str(CHILDREN)], cwd=PROGRAMS_DIR, timeout=120)
        assert result.returncode == 0, describe(result)
        assert_parent_profile_exact(report, result.stdout, function_named, describe(result))
        said = f"{program_counts(result.stdout)['forks']} forked children ran unprofiled"
        assert said in result.stderr, describe(result)
        offline = run_ulma(["report", str(trace)])
        assert offline.returncode == 0 and said in offline.stdout + offline.stderr, describe(offline)


def test_forked_children_of_a_threaded_program_are_followed_and_leave_the_parents_counts_exact(
    engine_flags: list[str],
    ulma_json: UlmaJson,
    function_named: FunctionNamed,
    describe: Callable[[Completed], str],
) -> None:
    result, report = ulma_json([*engine_flags, "--ring-size", RING, str(CHILDREN)], cwd=PROGRAMS_DIR,
                               timeout=120)
    why = describe(result)
    assert result.returncode == 0, why
    truth = program_counts(result.stdout)
    main, *children = report["processes"]
    # the program's own row is exactly what --no-children reports, but for the children it forked
    own = {**main, "forked_children": truth["forks"]}
    assert_parent_profile_exact(own, result.stdout, function_named, why)
    assert report["forked_children"] == 0 and "ran unprofiled" not in result.stderr, why
    assert len(children) == truth["forks"] and all(c["how"] == "fork" for c in children), why
    for child in children:
        _, fn = function_named(child, CHILDREN, "child_leaf")
        assert fn["calls"] == CHILD_CALLS and fn["self_ns"] == fn["total_ns"], f"{child['pid']}\n{why}"
    _, merged = function_named(report, CHILDREN, "child_leaf")
    assert merged["calls"] == CHILD_CALLS * truth["forks"], why


def start_idle(launcher: str, go: Path) -> tuple[subprocess.Popen[str], int]:
    """Starts fork_children.py with an idle agent; returns the process and the pid to attach to."""
    if launcher == "agent":
        cmd = [sys.executable, "-m", "ulma.agent", str(CHILDREN), str(go)]
    else:
        cmd = ulma_command(["run", "--wait-attach", str(CHILDREN), str(go)])
    proc = subprocess.Popen(cmd, cwd=PROGRAMS_DIR, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    pid = proc.pid
    if launcher == "wait-attach":
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "carries an idle agent" in line, line
        pid = int(line.split("`ulma attach ")[1].rstrip("`\n"))
    wait_for_agent(proc, pid)
    return proc, pid


WARNING = PROGRAMS_DIR / "fork_warning.py"


@pytest.mark.parametrize("children", [[], ["--no-children"]])
@pytest.mark.parametrize("mode", [[], ["thread"]])
def test_a_fork_warns_of_threads_exactly_when_plain_python_does(
        engine_flags: list[str], children: list[str], mode: list[str],
        run_python: Callable[..., Completed], run_ulma: Callable[..., Completed]) -> None:
    """Python 3.12+ warns at fork() when the process has more than one thread: the agent's own
    thread must not be counted (it is stopped around the fork), the program's own still are."""
    plain = run_python([str(WARNING), *mode], cwd=PROGRAMS_DIR)
    got = run_ulma(["run", "--no-live", "--no-report", *engine_flags, *children, str(WARNING), *mode],
                   cwd=PROGRAMS_DIR)

    def same(stderr: str) -> str:
        return re.sub(r"pid=\d+", "pid=N", stderr)

    assert plain.returncode == got.returncode == 0, got.stderr
    assert got.stdout == plain.stdout == "forked\n"
    assert same(got.stderr) == same(plain.stderr)
    if mode and sys.version_info >= (3, 12):  # the check can fail: the warning is there to see
        assert "multi-threaded" in plain.stderr


@pytest.mark.parametrize("launcher", ["agent", "wait-attach"])
def test_forked_children_of_an_attached_program_leave_its_counts_exact(
    launcher: str, tmp_path: Path, function_named: FunctionNamed
) -> None:
    for i in range(REPEATS):
        go, out = tmp_path / f"go{i}", tmp_path / f"attach{i}.json"
        target, pid = start_idle(launcher, go)
        attach = subprocess.Popen(ulma_command(["attach", str(pid), "--ring-size", RING, "--no-report",
                                                "--json", str(out)]),
                                  env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True)
        try:
            assert attach.stderr is not None
            line = attach.stderr.readline()
            assert "attached to process" in line, line + attach.stderr.read()
            go.touch()  # every call the program counts is made while attached
            stdout, target_err = target.communicate(timeout=120)
            _, attach_err = attach.communicate(timeout=60)
        finally:
            for proc in (target, attach):
                if proc.poll() is None:
                    kill_group(proc.pid)
                    proc.wait()
        why = f"program:\n{stdout}\n{target_err}\nattach:\n{line}{attach_err}"
        assert target.returncode == 0 and attach.returncode == 0, why
        assert "the program ended" in attach_err, why
        assert_parent_profile_exact(json.loads(out.read_text()), stdout, function_named, why)


def test_a_child_forked_while_threads_end_never_hangs(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str]
) -> None:
    # every thread gets a ring (so every ending thread runs ulma's clean-up); tiny rings keep fork fast
    args = [*engine_flags, "--no-report", "--max-threads", "20000", "--test-ring-size", "4K",
            "--cpu-interval", "0", str(THREAD_EXITS), "3000"]
    result, _report = ulma_json(args, cwd=PROGRAMS_DIR, timeout=240)
    assert result.returncode == 0 and "hung 0" in result.stdout, describe(result)
