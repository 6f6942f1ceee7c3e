"""Shared fixtures and helpers for ulma's tests.

Every subprocess runs in its own session with a timeout; on timeout its whole process group is
killed and the test fails with what the process had printed, so no test can hang. Subprocesses get
PYTHONHASHSEED=0 (the same hashing in every run that is compared with another) and
PYTHONDONTWRITEBYTECODE=1 (no __pycache__ left in tests/programs).
"""

from __future__ import annotations

import contextlib
import json
import os
import pstats
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest
from hypothesis import HealthCheck, settings

DEFAULT_TIMEOUT = 120.0

# Fuzzing budget.  "ci" (the default) keeps the fuzz tests of trace files (tests/format,
# tests/exporters/test_export_fuzz.py) to about a minute per Python on CI's runner, the same
# examples on every run being no goal (a failure prints its reproduction blob); "long"
# (HYPOTHESIS_PROFILE=long) searches twenty times deeper.  Those tests set no count of their own.
settings.register_profile("ci", max_examples=150, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("long", settings.get_profile("ci"), max_examples=3000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]
Key = tuple[int, str]  # (first line, co_name) of a function in one file


REQUIRE_DEPS = "ULMA_REQUIRE_DEPS"  # set to 1 (.ci/run does): a missing outside reader fails the test


def missing_dependency(why: str) -> NoReturn:
    """A test cannot run because something outside Python is missing (`why`
    names the package that brings it).  With ULMA_REQUIRE_DEPS=1, as in CI,
    that is a failure: CI installs it, so a skip there would hide a test that
    never ran.  Elsewhere the test is skipped, saying what to install."""
    if os.environ.get(REQUIRE_DEPS) == "1":
        pytest.fail(f"{why} ({REQUIRE_DEPS}=1: required here)", pytrace=False)
    pytest.skip(why)


def available_engines() -> list[str]:
    """The engines an engine-parametrized test runs under: "auto" (no --engine flag: the default,
    sys.monitoring on 3.12+, PEP 523 on 3.11) and each other engine by name.  The default is not
    run again under its own name: the same engine would give the same figures, at a third (3.12+)
    or half (3.11) of the suite's time; test_engine_choice checks that naming it is the same."""
    return ["auto", "pep523"] if sys.version_info >= (3, 12) else ["auto"]


_STATE_HOME = "XDG_STATE_HOME"  # where `ulma run` keeps the program's output (ulma.monitor.output)
_state_key = pytest.StashKey[str | None]()
_session_state_key = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Every ulma the tests start keeps the program's output under a directory of this session,
    not the user's: what a test leaves there (a killed ulma) is no concern of the user's ulma, nor
    what the user's runs left of the tests'."""
    import tempfile

    config.stash[_state_key] = os.environ.get(_STATE_HOME)
    config.stash[_session_state_key] = os.environ[_STATE_HOME] = tempfile.mkdtemp(prefix="ulma-tests-state-")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Each test its own place for kept output, inside the session's: a test whose ulma lost its
    terminal or was killed keeps the program's output there, and every later ulma would name it in
    a line of its own on stderr (the live-view tests close their terminal with the program still
    running)."""
    import tempfile

    session_home = item.config.stash[_session_state_key]
    os.environ[_STATE_HOME] = tempfile.mkdtemp(prefix="test-", dir=session_home)


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    shutil.rmtree(config.stash[_session_state_key], ignore_errors=True)
    old = config.stash.get(_state_key, None)
    if old is None:
        os.environ.pop(_STATE_HOME, None)
    else:
        os.environ[_STATE_HOME] = old


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" in metafunc.fixturenames:
        metafunc.parametrize("engine", available_engines())


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONSAFEPATH", None)  # would change sys.path[0], which the identity tests compare
    if extra:
        env.update(extra)
    return env


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_process(
    cmd: Sequence[str],
    *,
    cwd: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> Completed:
    """Run cmd in a new session; on timeout kill its process group and fail the test."""
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=subprocess_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a process outside the group still holds the pipes
            proc.kill()
            out, err = b"", b""
        pytest.fail(
            f"timed out after {timeout} s: {' '.join(cmd)}\n"
            f"--- stdout ---\n{out.decode(errors='replace')}\n--- stderr ---\n{err.decode(errors='replace')}"
        )
    return subprocess.CompletedProcess(
        list(cmd), proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    )


def ulma_command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "ulma", *args]


def engine_args(engine: str) -> list[str]:
    return [] if engine == "auto" else ["--engine", engine]


def _describe(result: Completed) -> str:
    """The command, exit code and output of a run, for assertion messages."""
    return (
        f"command: {' '.join(map(str, result.args))}\nexit code: {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
    )


def _same_file(a: str | Path, b: str | Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _cprofile_counts(prof: Path, program: Path) -> dict[Key, int]:
    """pstats' ncalls (all calls, recursive ones included) per function defined in `program`."""
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    counts: dict[Key, int] = {}
    for (filename, line, name), (_cc, nc, *_rest) in stats.items():
        if filename != "~" and _same_file(filename, program):
            counts[(line, name)] = nc
    return counts


def _counts_next_to(text: str, word: str) -> list[int]:
    """Integers printed right after `word` ("dropped 12", "dropped: 1,234"), else before it ("12 dropped")."""
    number = r"(\d[\d,_']*)"
    found = re.findall(rf"\b{word}\b\s*[:=]?\s*{number}", text, re.I)
    found = found or re.findall(rf"{number}\s+{word}\b", text, re.I)
    return [int(re.sub(r"[,_']", "", n)) for n in found]


def _ulma_functions(report: Mapping[str, Any], program: Path) -> dict[Key, dict[str, Any]]:
    """ulma's functions defined in `program`, keyed like cprofile_counts (co_name = last part of co_qualname).

    Entries with the same key (which a correct ulma never produces for the test programs) are merged by
    adding calls, resumes and times, so that a duplicate shows up as a wrong count rather than a lost one.
    """
    found: dict[Key, dict[str, Any]] = {}
    for fn in report["functions"]:
        if not _same_file(fn["file"], program):
            continue
        key = (int(fn["line"]), str(fn["name"]).rsplit(".", 1)[-1])
        if key in found:
            merged = dict(found[key])
            for field in ("calls", "resumes", "self_ns", "total_ns"):
                merged[field] += fn[field]
            found[key] = merged
        else:
            found[key] = dict(fn)
    return found


def _function_named(report: Mapping[str, Any], program: Path, qualname: str) -> tuple[int, dict[str, Any]]:
    """(index, entry) of the one function of `program` with this co_qualname; fails the test otherwise."""
    matches = [
        (i, fn)
        for i, fn in enumerate(report["functions"])
        if fn["name"] == qualname and _same_file(fn["file"], program)
    ]
    names = sorted({fn["name"] for fn in report["functions"] if _same_file(fn["file"], program)})
    assert len(matches) == 1, (
        f"expected one function {qualname!r} of {program.name}, found {len(matches)}; have {names}"
    )
    return matches[0]


@pytest.fixture
def run_ulma() -> RunFn:
    """run_ulma(args, cwd=None, timeout=120, env=None): `python -m ulma ARGS` as a CompletedProcess[str]."""

    def run(
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> Completed:
        return run_process(ulma_command(args), cwd=cwd, timeout=timeout, env=env)

    return run


@pytest.fixture
def run_python() -> RunFn:
    """run_python(args, cwd=None, timeout=120, env=None): plain `python ARGS` as a CompletedProcess[str]."""

    def run(
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> Completed:
        return run_process([sys.executable, *args], cwd=cwd, timeout=timeout, env=env)

    return run


@pytest.fixture
def engine_flags(engine: str) -> list[str]:
    """The `--engine` option for the parametrized engine (none for "auto", the default)."""
    return engine_args(engine)


@pytest.fixture
def ulma_json(
    tmp_path: Path,
) -> Callable[..., tuple[Completed, dict[str, Any]]]:
    """ulma_json(run_args, cwd=None, timeout=120, env=None) -> (result, report).

    Runs `python -m ulma run --json FILE RUN_ARGS...` and loads FILE; fails the test, with ulma's
    output, when FILE was not written or is not JSON.
    """
    counter = iter(range(1_000_000))

    def run(
        run_args: Sequence[str],
        *,
        cwd: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> tuple[Completed, dict[str, Any]]:
        out = tmp_path / f"ulma-{next(counter)}.json"
        command = ulma_command(["run", "--json", str(out), *run_args])
        result = run_process(command, cwd=cwd, timeout=timeout, env=env)
        if not out.exists():
            pytest.fail(f"ulma wrote no JSON file\n{_describe(result)}")
        try:
            report: dict[str, Any] = json.loads(out.read_text())
        except ValueError as error:
            pytest.fail(f"ulma's JSON file does not parse: {error}\n{_describe(result)}")
        return result, report

    return run


@pytest.fixture
def describe() -> Callable[[Completed], str]:
    """describe(result): a run's command, exit code, stdout and stderr, for assertion messages."""
    return _describe


@pytest.fixture
def counts_next_to() -> Callable[[str, str], list[int]]:
    """counts_next_to(text, word): integers printed next to `word` in text, e.g. a report's "dropped 12"."""
    return _counts_next_to


@pytest.fixture
def cprofile_counts() -> Callable[[Path, Path], dict[Key, int]]:
    """cprofile_counts(prof, program): pstats ncalls per (first line, co_name) of functions in program."""
    return _cprofile_counts


@pytest.fixture
def ulma_functions() -> Callable[[Mapping[str, Any], Path], dict[Key, dict[str, Any]]]:
    """ulma_functions(report, program): ulma's JSON functions of program, per (first line, co_name)."""
    return _ulma_functions


@pytest.fixture
def function_named() -> Callable[[Mapping[str, Any], Path, str], tuple[int, dict[str, Any]]]:
    """function_named(report, program, qualname): (index, entry) of that function, which must be unique."""
    return _function_named


def wait_for_agent(proc: subprocess.Popen[str], pid: int | None = None) -> str:
    """The address the idle agent of `pid` (default: proc's) listens on, once it does."""
    from ulma.agent.listener import agent_addresses

    pid = proc.pid if pid is None else pid
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(FileNotFoundError):
            addresses = agent_addresses(pid)
            if addresses:
                return addresses[0]
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the agent never listened"
        time.sleep(0.01)


class AgentTarget:
    """`python -m ulma.agent PROGRAM STOP`: a program carrying an idle agent, ready once its agent
    listens; it runs until the file STOP exists (see tests/programs/attach_target.py)."""

    def __init__(self, program: Path, tmp_path: Path) -> None:
        self.stop = tmp_path / "stop"
        self.proc = subprocess.Popen([sys.executable, "-m", "ulma.agent", str(program), str(self.stop)],
                                     cwd=program.parent, env=subprocess_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.address = wait_for_agent(self.proc)

    def finish(self) -> tuple[int, str, str]:
        self.stop.touch()
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, err

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def descriptors(self) -> dict[str, str]:
        """{fd: what it is} of the target now."""
        found = {}
        for fd in os.listdir(f"/proc/{self.proc.pid}/fd"):
            try:
                found[fd] = os.readlink(f"/proc/{self.proc.pid}/fd/{fd}")
            except FileNotFoundError:
                continue  # closed while we looked
        return found

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


@contextlib.contextmanager
def agent_target(program: Path, tmp_path: Path) -> Iterator[AgentTarget]:
    """An AgentTarget, killed afterwards if it still runs."""
    t = AgentTarget(program, tmp_path)
    try:
        yield t
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
            t.proc.wait()
