"""Native scopes (ulma.h) in a Python program under ulma: a C extension built here with setuptools
from tests/programs/scoped_ext.c, which includes ulma's public header and links nothing of ulma's,
read as a user reads it (the JSON report, the text export) against what the program did and
measured itself."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing_dependency, run_process, subprocess_env, ulma_command
from tests.integration.test_split_under_load import cpu_hogs  # noqa: F401 (a fixture)
from ulma import include

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "native_scoped.py"
EXT_SOURCE = PROGRAMS_DIR / "scoped_ext.c"
MS = 1_000_000

Completed = subprocess.CompletedProcess[str]
UlmaJson = Callable[..., tuple[Completed, dict[str, Any]]]

SETUP = """
from setuptools import Extension, setup
setup(name="scoped_ext", ext_modules=[Extension(
    "scoped_ext", [{source!r}], include_dirs=[{include!r}],
    extra_compile_args=["-Wall", "-Wextra", "-Werror"])])
"""


@pytest.fixture(scope="module")
def ext_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extension, built by setuptools with this Python, against ulma's header alone."""
    where = tmp_path_factory.mktemp("scoped_ext")
    (where / "setup.py").write_text(SETUP.format(source=str(EXT_SOURCE), include=include.get_include()))
    built = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=where,
                           env=compiler_env(), capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    return where


def compiler_env() -> dict[str, str]:
    """The environment for building: without a sanitizer's runtime preloaded for the programs
    under test (.ci/sanitize), which the compilers need not carry."""
    return {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}


def run_scoped(ulma_json: UlmaJson, describe: Callable[[Completed], str], ext: Path, mode: str, n: int,
               *flags: str) -> tuple[dict[str, Any], dict[str, Any]]:
    result, report = ulma_json([*flags, "--no-report", str(PROGRAM), str(ext), mode, str(n)],
                               cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    facts: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report, facts


def named(report: dict[str, Any], name: str, file: Path) -> tuple[int, dict[str, Any]]:
    found = [(i, f) for i, f in enumerate(report["functions"])
             if f["name"] == name and Path(f["file"]).resolve() == file.resolve()]
    assert len(found) == 1, (name, [(f["name"], f["file"]) for f in report["functions"]][:40])
    return found[0]


def edge_calls(report: dict[str, Any], caller: int, callee: int) -> int:
    return sum(e["calls"] for e in report["edges"] if e["caller"] == caller and e["callee"] == callee)


def test_the_extension_links_nothing_of_ulmas(ext_dir: Path) -> None:
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    (so,) = ext_dir.glob("scoped_ext*.so")
    with open(so, "rb") as f:
        elf = ELFFile(f)
        needed = [str(t.needed) for s in elf.iter_sections() if isinstance(s, DynamicSection)  # type: ignore[attr-defined]
                  for t in s.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
        dynsym = elf.get_section_by_name(".dynsym")
        assert isinstance(dynsym, SymbolTableSection)
        undefined = {sym.name for sym in dynsym.iter_symbols() if sym["st_shndx"] == "SHN_UNDEF" and sym.name}
    assert not [n for n in needed if "ulma" in n or ("python" in n.lower() and "libpython" not in n)], needed
    assert not [u for u in undefined if u.startswith("ulma")], sorted(undefined)
    assert "dlsym" in undefined  # the runtime is looked up at first use, not linked


def test_native_scopes_nest_between_their_python_caller_and_its_callbacks_with_exact_counts(
    ext_dir: Path, engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    n = 300
    report, facts = run_scoped(ulma_json, describe, ext_dir, "nested", n, *engine_flags)
    assert facts["cb"] == n and report["dropped"] == 0
    run_i, run_f = named(report, "run", PROGRAM)
    outer_i, outer = named(report, "outer", EXT_SOURCE)
    inner_i, inner = named(report, "inner", EXT_SOURCE)
    cb_i, cb = named(report, "cb", PROGRAM)
    assert (run_f["calls"], outer["calls"], inner["calls"], cb["calls"]) == (1, 1, n, facts["cb"])
    # py run() -> native outer -> native inner -> py cb(): the stack a user reads
    assert edge_calls(report, run_i, outer_i) == 1
    assert edge_calls(report, outer_i, inner_i) == n
    assert edge_calls(report, inner_i, cb_i) == n
    assert edge_calls(report, run_i, cb_i) == 0 and edge_calls(report, outer_i, cb_i) == 0
    # inclusive times nest: each holds what runs inside it
    assert run_f["total_ns"] >= outer["total_ns"] >= inner["total_ns"] >= cb["total_ns"] > 0


def test_scopes_of_a_thread_python_never_saw_and_without_the_gil_are_counted_on_their_own_rings(
    ext_dir: Path, ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    n = 400
    report, _ = run_scoped(ulma_json, describe, ext_dir, "threads", n)
    assert report["dropped"] == 0 and report["untraced_threads"] == 0
    run_i, _ = named(report, "run", PROGRAM)
    main_i, thread_main = named(report, "thread_main", EXT_SOURCE)
    work_i, thread_work = named(report, "thread_work", EXT_SOURCE)
    nogil_i, nogil = named(report, "nogil_work", EXT_SOURCE)
    assert (thread_main["calls"], thread_work["calls"], nogil["calls"]) == (1, n, n)
    assert edge_calls(report, main_i, work_i) == n  # on the new thread, under its own root scope
    assert edge_calls(report, run_i, nogil_i) == n  # the GIL released inside run()'s C call
    assert edge_calls(report, run_i, main_i) == 0  # another thread's: not under run()
    assert report["threads"] >= 2


def test_a_scopes_cpu_time_is_what_its_thread_measured_inside_it_on_a_busy_machine(
    cpu_hogs: int, ext_dir: Path, ulma_json: UlmaJson, describe: Callable[[Completed], str],  # noqa: F811
) -> None:
    n = 150
    report, facts = run_scoped(ulma_json, describe, ext_dir, "timed", n)
    _, timed = named(report, "timed_work", EXT_SOURCE)
    truth = facts["inside_cpu_ns"]  # the thread's own CPU clock, read inside each scope
    assert timed["calls"] == n and report["cpu_readings"] is True
    assert truth > 20 * MS, truth  # enough to be preempted by the hogs
    why = (timed, truth)
    assert abs(timed["cpu_ns"] - truth) <= max(0.10 * truth, 5 * MS), why
    # the hogs took the CPU from it: the scope's waiting is its wall time less its CPU time
    assert timed["total_ns"] >= truth, why
    assert abs(timed["wait_ns"] - (timed["total_ns"] - truth)) <= max(0.10 * timed["total_ns"], 5 * MS), why


def test_a_full_ring_loses_scopes_counted_and_restates_them_among_the_python_frames(
    ext_dir: Path, ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    n = 50
    report, facts = run_scoped(ulma_json, describe, ext_dir, "flood", n, "--test-ring-size", "4K")
    assert report["dropped"] > 0, report["dropped"]
    ids = {name: named(report, name, PROGRAM if name in ("run", "cb") else EXT_SOURCE)[0]
           for name in ("run", "outer", "inner", "cb")}
    # whatever was lost, what was kept nests as the program did: a restatement inside cb() puts
    # the scopes that were open between run() and cb(), never above cb()
    allowed = {(ids["run"], ids["outer"]), (ids["outer"], ids["inner"]), (ids["inner"], ids["cb"])}
    seen = {(e["caller"], e["callee"]) for e in report["edges"]
            if e["caller"] in ids.values() and e["callee"] in ids.values() and e["calls"]}
    assert seen <= allowed, (seen, ids)
    counts = {name: report["functions"][i]["calls"] for name, i in ids.items()}
    rounds = facts["rounds"]
    assert counts["inner"] <= rounds * n and counts["cb"] <= facts["cb"] and counts["outer"] <= rounds, counts
    assert counts["inner"] > 0 and counts["cb"] > 0, counts


def test_a_forked_childs_scopes_leave_the_parents_counts_exact(
    ext_dir: Path, ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    n = 200
    report, facts = run_scoped(ulma_json, describe, ext_dir, "fork", n, "--no-children")
    assert facts["cb"] == 2 * n and report["forked_children"] == 1
    calls = {f["name"]: f["calls"] for f in report["functions"] if Path(f["file"]).resolve() == EXT_SOURCE}
    assert calls == {"outer": 2, "inner": 2 * n}, calls  # the child's 10 * n inner scopes: none


def test_marks_and_counters_reach_the_text_export_with_their_values(
    ext_dir: Path, tmp_path: Path, describe: Callable[[Completed], str],
) -> None:
    n = 6
    trace = tmp_path / "run.ulma"
    ran = run_process(ulma_command(["run", "--no-report", "-o", str(trace), str(PROGRAM), str(ext_dir),
                                    "marks", str(n)]), cwd=PROGRAMS_DIR)
    assert ran.returncode == 0, describe(ran)
    text = run_process(ulma_command(["export", str(trace), "--format", "text", "-o", "-"]))
    assert text.returncode == 0, describe(text)
    lines = [line.split("\t") for line in text.stdout.splitlines() if not line.startswith("#")]
    marks = [f for f in lines if f[3] == "mark"]
    counters = [f for f in lines if f[3] == "counter"]
    assert len(marks) == n and {f[4] for f in marks} == {"tick"}, marks
    level = [f[4] for f in counters if f[4].startswith("level=")]
    assert level == [f"level={i}" for i in range(n - 1)] + ["level=-1"], counters
    wide = [f[4] for f in counters if f[4].startswith("wide=")]
    assert wide == [f"wide={-(1 << 50) * (i + 1)}" for i in range(n)], counters
    assert all(f[5].startswith(str(EXT_SOURCE)) for f in marks + counters)


def test_counters_are_in_the_report_the_json_and_the_chrome_export(
    ext_dir: Path, tmp_path: Path, describe: Callable[[Completed], str],
) -> None:
    """What the program set (level: 0 .. n-2 then -1; wide: -(2^50) * (i + 1)), per counter: how
    many values, the last, least, most and mean -- live (--json), from the trace (ulma report),
    and as chrome counter events, one per value in order."""
    n = 40
    trace, live_json, trace_json = tmp_path / "run.ulma", tmp_path / "live.json", tmp_path / "trace.json"
    ran = run_process(ulma_command(["run", "-o", str(trace), "--json", str(live_json), str(PROGRAM),
                                    str(ext_dir), "marks", str(n)]), cwd=PROGRAMS_DIR)
    assert ran.returncode == 0, describe(ran)
    level = [*range(n - 1), -1]
    wide = [-(1 << 50) * (i + 1) for i in range(n)]
    expected = {name: (len(v), v[-1], min(v), max(v)) for name, v in (("level", level), ("wide", wide))}
    means = {"level": sum(level) / n, "wide": sum(wide) / n}
    at = _line_of('ULMA_COUNTER("level"')
    assert "counters 2 (ULMA_COUNTER)" in ran.stderr, ran.stderr
    assert f"level (scoped_ext.c:{at}): -1 at" in ran.stderr, ran.stderr
    reported = run_process(ulma_command(["report", str(trace), "--json", str(trace_json)]))
    assert reported.returncode == 0, describe(reported)
    assert "counters 2 (ULMA_COUNTER)" in reported.stdout + reported.stderr
    for path in (live_json, trace_json):
        rows = {c["name"]: c for c in json.loads(path.read_text())["counters"]}
        assert set(rows) == {"level", "wide"}, rows
        for name, row in rows.items():
            assert (row["samples"], row["last"], row["min"], row["max"]) == expected[name], (path, row)
            assert abs(row["mean"] - means[name]) <= 1e-9 * abs(means[name]) + 1e-9, row
            assert Path(row["file"]).resolve() == EXT_SOURCE and row["line"] > 0
            assert 0 < row["last_ns"] <= json.loads(path.read_text())["wall_ns"]
    chrome = run_process(ulma_command(["export", str(trace), "--format", "chrome", "-o", "-"]))
    assert chrome.returncode == 0, describe(chrome)
    events = json.loads(chrome.stdout)  # (the array form)
    for name, values in (("level", level), ("wide", wide)):
        got = [e for e in events if e["ph"] == "C" and e["name"] == name]
        assert [e["args"]["value"] for e in got] == values, got[:5]
        stamps = [float(e["ts"]) for e in got]
        assert stamps == sorted(stamps)


def _line_of(text: str) -> int:
    """The line of scoped_ext.c that holds `text`."""
    return next(i for i, line in enumerate(EXT_SOURCE.read_text().splitlines(), 1) if text in line)


def test_scopes_appear_in_the_exports_stacks(
    ext_dir: Path, tmp_path: Path, describe: Callable[[Completed], str],
) -> None:
    trace = tmp_path / "run.ulma"
    ran = run_process(ulma_command(["run", "--no-report", "-o", str(trace), str(PROGRAM), str(ext_dir),
                                    "nested", "20"]), cwd=PROGRAMS_DIR)
    assert ran.returncode == 0, describe(ran)
    out = run_process(ulma_command(["export", str(trace), "--format", "collapsed", "-o", "-"]))
    assert out.returncode == 0, describe(out)
    stacks = [line.rsplit(" ", 1)[0].split(";") for line in out.stdout.splitlines()]
    names = [[frame.split(" ")[0] for frame in stack] for stack in stacks]
    assert any(s[-4:] == ["run", "outer", "inner", "cb"] for s in names), out.stdout[:2000]


def test_without_ulma_or_while_it_does_not_trace_scopes_do_nothing(
    ext_dir: Path, describe: Callable[[Completed], str],
) -> None:
    plain = run_process([sys.executable, str(PROGRAM), str(ext_dir), "nested", "50"], cwd=PROGRAMS_DIR)
    assert plain.returncode == 0 and json.loads(plain.stdout) == {"cb": 50}, describe(plain)
    # ulma's runtime in the process, no session: the hook is found and stays clear
    loaded = run_process([sys.executable, "-c",
                          "import ulma._core, runpy, sys; sys.argv = sys.argv[1:]; "
                          "runpy.run_path(sys.argv[0], run_name='__main__')",
                          str(PROGRAM), str(ext_dir), "nested", "50"], cwd=PROGRAMS_DIR)
    assert loaded.returncode == 0 and json.loads(loaded.stdout) == {"cb": 50}, describe(loaded)


@pytest.fixture
def attach_target(ext_dir: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    from ulma.inject import ptrace

    if not ptrace.available() and shutil.which("gdb") is None:
        missing_dependency("attaching to a plain python program needs gdb (Debian package: gdb)")
    where = tmp_path / "files"
    where.mkdir()
    proc = subprocess.Popen([sys.executable, str(PROGRAMS_DIR / "scoped_target.py"), str(ext_dir), str(where),
                             "250"], env=subprocess_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (where / "ready").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.01)
        yield proc, where
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_attach_finds_a_module_whose_scopes_ran_before_ulma_was_loaded(
    attach_target: tuple[subprocess.Popen[str], Path], tmp_path: Path,
) -> None:
    proc, where = attach_target
    out, log = tmp_path / "attach.json", tmp_path / "attach.err"
    with open(log, "w") as err:
        ulma = subprocess.Popen(ulma_command(["attach", str(proc.pid), "--no-report", "--json", str(out)]),
                                env=subprocess_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "attached to process" not in log.read_text():
            assert ulma.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)
        (where / "go").touch()
        while not (where / "done").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.01)
        time.sleep(0.1)  # a drain
        ulma.send_signal(signal.SIGINT)
        ulma.wait(60)
    finally:
        if ulma.poll() is None:
            ulma.kill()
            ulma.wait()
    assert ulma.returncode == 0, log.read_text()
    report = json.loads(out.read_text())
    calls = {f["name"]: f["calls"] for f in report["functions"] if Path(f["file"]).resolve() == EXT_SOURCE}
    # only the phase while attached: one outer scope, 250 inner ones (the 3 before ulma: none)
    assert calls == {"outer": 1, "inner": 250}, calls
    (where / "stop").touch()
    said, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "ulma loaded" in said


def test_the_include_command_points_at_the_header_and_its_build_files(tmp_path: Path) -> None:
    where = run_process([sys.executable, "-m", "ulma.include"])
    assert where.returncode == 0 and (Path(where.stdout.strip()) / "ulma" / "ulma.h").is_file(), where
    flags = run_process([sys.executable, "-m", "ulma.include", "--cflags"])
    assert flags.stdout.strip() == f"-I{where.stdout.strip()}"
    if shutil.which("pkg-config") is None:
        missing_dependency("the pkg-config file is read by pkg-config (Debian package: pkg-config)")
    pc_dir = run_process([sys.executable, "-m", "ulma.include", "--pkgconfig-dir"]).stdout.strip()
    pc = subprocess.run(["pkg-config", "--cflags", "ulma"], env=dict(os.environ, PKG_CONFIG_PATH=pc_dir),
                        capture_output=True, text=True, check=False)
    assert pc.returncode == 0, pc.stderr
    assert Path(pc.stdout.strip().removeprefix("-I")).resolve() == Path(where.stdout.strip()).resolve()
