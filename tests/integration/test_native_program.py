"""A program without Python (C++, built here with g++) that uses ulma's header and links its
standalone runtime (ulma/ulma_runtime.c): `ulma run` and `ulma record` profile its scopes as they
profile a Python program's functions, read against what the program counted itself."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing_dependency, run_process, subprocess_env, ulma_command, wait_for_agent
from tests.integration.test_native_scopes import compiler_env
from ulma import include

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
FIB_15, FIB_10 = 1973, 177  # calls fib(n) makes: c(n) = 1 + c(n - 1) + c(n - 2), c(0) = c(1) = 1

Completed = subprocess.CompletedProcess[str]
UlmaJson = Callable[..., tuple[Completed, dict[str, Any]]]


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        missing_dependency(f"the native test program is built with {name} (Debian package: {package})")
    return found


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """native_prog (C++, with ulma's runtime) and native_plain (C, without it)."""
    where = tmp_path_factory.mktemp("native")
    gcc, gxx, inc = tool("gcc", "gcc"), tool("g++", "g++"), include.get_include()
    runtime = where / "ulma_runtime.o"
    steps = [
        [gcc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{inc}", "-c",
         str(Path(inc) / "ulma" / "ulma_runtime.c"), "-o", str(runtime)],
        [gxx, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", f"-I{inc}",
         str(PROGRAMS_DIR / "native_prog.cpp"), str(runtime), "-o", str(where / "native_prog")],
        [gxx, "-std=c++11", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", f"-I{inc}",
         str(PROGRAMS_DIR / "native_target.cpp"), str(runtime), "-o", str(where / "native_target")],
        [gcc, "-O2", str(PROGRAMS_DIR / "native_plain.c"), "-o", str(where / "native_plain")],
    ]
    for cmd in steps:
        built = subprocess.run(cmd, capture_output=True, text=True, check=False, env=compiler_env())
        assert built.returncode == 0, built.stderr
    return {"prog": where / "native_prog", "plain": where / "native_plain", "target": where / "native_target"}


def counts(report: dict[str, Any]) -> dict[str, int]:
    return {f["name"]: f["calls"] for f in report["functions"] if f["file"].endswith("native_prog.cpp")}


def test_run_profiles_a_native_programs_scopes_with_exact_counts(
    programs: dict[str, Path], ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    rounds = 40
    result, report = ulma_json(["--no-report", str(programs["prog"]), str(rounds)])
    assert result.returncode == 7, describe(result)  # the program's own exit code
    entered = int(result.stdout.split()[0])
    assert entered == rounds * FIB_15 + 100 * FIB_10
    assert report["engine"] == "native" and report["dropped"] == 0 and report["threads"] == 2
    # the mark at the end is an instant, counted once
    assert counts(report) == {"fib": entered, "main_work": 1, "worker": 1, "job": 100, "done": 1}
    assert {f["kind"] for f in report["functions"] if f["name"] == "done"} == {"mark"}
    fns = {f["name"]: i for i, f in enumerate(report["functions"]) if f["file"].endswith("native_prog.cpp")}
    edges = {(e["caller"], e["callee"]): e["calls"] for e in report["edges"]}
    assert edges[(fns["main_work"], fns["fib"])] == rounds
    assert edges[(fns["worker"], fns["job"])] == 100 and edges[(fns["job"], fns["fib"])] == 100
    assert (fns["main_work"], fns["job"]) not in edges
    assert report["scope_probe_ns"] > 0 and report["scope_end_probe_ns"] > 0


def test_record_keeps_a_trace_that_reports_the_same_counts(
    programs: dict[str, Path], tmp_path: Path, describe: Callable[[Completed], str],
) -> None:
    trace, out = tmp_path / "native.ulma", tmp_path / "native.json"
    recorded = run_process(ulma_command(["record", "-o", str(trace), "--", str(programs["prog"]), "10"]))
    assert recorded.returncode == 7, describe(recorded)
    entered = int(recorded.stdout.split()[0])
    made = run_process(ulma_command(["report", str(trace), "--json", str(out)]))
    assert made.returncode == 0, describe(made)
    assert counts(json.loads(out.read_text())) == {"fib": entered, "main_work": 1, "worker": 1, "job": 100,
                                                   "done": 1}
    text = run_process(ulma_command(["export", str(trace), "--format", "text", "-o", "-"]))
    lines = [line.split("\t") for line in text.stdout.splitlines() if not line.startswith("#")]
    assert [f[4] for f in lines if f[3] == "mark"] == ["done"]
    assert [f[4] for f in lines if f[3] == "counter"] == [f"sum={recorded.stdout.split()[1]}"]


def test_a_full_ring_drops_counted_and_restates_the_open_scopes(
    programs: dict[str, Path], ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    result, report = ulma_json(["--no-report", "--test-ring-size", "4K", str(programs["prog"]), "200"])
    assert result.returncode == 7, describe(result)
    entered = int(result.stdout.split()[0])
    assert report["dropped"] > 0
    got = counts(report)
    assert 0 < got["fib"] < entered
    fns = {f["name"]: i for i, f in enumerate(report["functions"]) if f["file"].endswith("native_prog.cpp")}
    allowed = {(fns["main_work"], fns["fib"]), (fns["fib"], fns["fib"])}
    if "job" in fns:
        allowed |= {(fns["job"], fns["fib"]), (fns.get("worker", -1), fns["job"])}
    seen = {(e["caller"], e["callee"]) for e in report["edges"]
            if e["caller"] in fns.values() and e["callee"] in fns.values()}
    assert seen <= allowed, (seen, fns)  # restated stacks nest as the program did
    # every fib call kept has its caller: after each drop the open scopes were restated (without
    # them, a call after a drop would start at the thread's root)
    into_fib = sum(e["calls"] for e in report["edges"] if e["callee"] == fns["fib"])
    assert into_fib == got["fib"], (into_fib, got)


def test_a_program_without_the_runtime_is_said_to_have_recorded_nothing(
    programs: dict[str, Path], describe: Callable[[Completed], str],
) -> None:
    ran = run_process(ulma_command(["run", "--no-report", str(programs["plain"])]))
    assert ran.returncode == 1 and ran.stdout == "plain\n", describe(ran)
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and "ulma_runtime.c" in lines[0] and "Traceback" not in ran.stderr, ran.stderr


def test_attach_and_detach_an_idle_native_program_count_only_while_attached(
    programs: dict[str, Path], tmp_path: Path,
) -> None:
    proc = subprocess.Popen([str(programs["target"])], env=subprocess_env({"ULMA_LISTEN": "1"}),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None

    def phase(k: int) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(f"{k}\n")
        proc.stdin.flush()
        assert proc.stdout.readline().split()[:2] == ["done", str(k)]

    def attached(k: int, name: str) -> dict[str, Any]:
        out, log = tmp_path / f"{name}.json", tmp_path / f"{name}.err"
        with open(log, "w") as err:
            command = ulma_command(["attach", str(proc.pid), "--no-report", "--json", str(out)])
            ulma = subprocess.Popen(command, env=subprocess_env(), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while "attached to process" not in log.read_text():
                assert ulma.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.01)
            phase(k)
            ulma.send_signal(signal.SIGINT)
            ulma.wait(60)
        finally:
            if ulma.poll() is None:
                ulma.kill()
                ulma.wait()
        assert ulma.returncode == 0, log.read_text()
        report: dict[str, Any] = json.loads(out.read_text())
        return report

    try:
        wait_for_agent(proc)
        phase(5)  # before any attach: nothing recorded
        first = attached(40, "first")
        phase(7)  # detached
        second = attached(3, "second")  # a second session of the same runtime
        proc.stdin.close()
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first["engine"] == "native" and first["dropped"] == 0
    assert counts_in(first) == {"job": 40, "fib": 40 * FIB_10}
    assert counts_in(second) == {"job": 3, "fib": 3 * FIB_10}


def counts_in(report: dict[str, Any]) -> dict[str, int]:
    return {f["name"]: f["calls"] for f in report["functions"] if f["file"].endswith("native_target.cpp")}


def test_options_a_native_program_cannot_follow_are_refused_in_one_line(
    programs: dict[str, Path], describe: Callable[[Completed], str],
) -> None:
    for flags in (["--only", "fib"], ["--budget", "5"], ["--native-calls"]):
        ran = run_process(ulma_command(["run", "--no-report", *flags, str(programs["prog"])]))
        assert ran.returncode == 2 and ran.stdout == "", describe(ran)  # the program never ran
        assert ran.stderr.count("\n") == 1 and f"{flags[0]} applies to Python programs" in ran.stderr
