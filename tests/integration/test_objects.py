"""--objects: objects made and destroyed per type and per function that made them, read from the
JSON report and the trace's, against what tests/programs/objects_made.py knows it did (N objects of
each type made by its own maker, K of them kept; N made in a thread of its own and dropped by the
main thread)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    agent_target,
    missing_dependency,
    run_process,
    subprocess_env,
    ulma_command,
    wait_for_agent,
)

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PROGRAM = PROGRAMS_DIR / "objects_made.py"
N, KEEP = 1000, 100

Completed = subprocess.CompletedProcess[str]
UlmaJson = Callable[..., tuple[Completed, dict[str, Any]]]

needs_313 = pytest.mark.skipif(sys.version_info < (3, 13),
                               reason="a ref tracer needs Python 3.13 (PyRefTracer)")
ALLOCATOR = sys.version_info < (3, 13)  # 3.11, 3.12: the object allocator's blocks
# CPython's free lists: these types' objects are reused without a block made or freed, unseen there
FREE_LISTED = {"list", "dict"}


def shares(report: dict[str, Any]) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(type, function) -> (made, of them destroyed, destroyed while it was on top)."""
    return {(t["name"], f["name"]): (f["created"], f["freed"], f["freed_here"])
            for t in report["types"] for f in t["by_function"]}


def check_made(report: dict[str, Any]) -> None:
    """Made: exact.  Destroyed: exact where the interpreter tells the ref tracer of every
    destruction ("reftracer"); where it does not (CPython 3.13.0: "reftracer-late"), exact for
    objects whose blocks are freed (str, instances), and for lists and dicts CPython keeps in its
    free lists never more than were, and an object kept never counted destroyed.  Python 3.11 and
    3.12 ("allocator"): exact for objects that get a block of their own (str, instances); list and
    dict objects CPython takes from its free lists are not seen (never more counted than were)."""
    mechanism = report["objects"]["mechanism"]
    exact = mechanism in ("reftracer", "allocator")
    assert mechanism == "allocator" if ALLOCATOR else mechanism in ("reftracer", "reftracer-late")
    if sys.version_info[:3] == (3, 13, 0):
        assert not exact  # (its eval loop tells the tracer of next to no list it drops)
    got = shares(report)
    for type_name, maker in (("list", "make_lists"), ("dict", "make_dicts"), ("str", "make_strs"),
                             ("Thing", "make_things")):
        made, freed, _here = got.get((type_name, maker), (0, 0, 0))
        if ALLOCATOR and type_name in FREE_LISTED:
            # (free lists: at most 80 of each kept by CPython; a block is made for each list kept
            # past them, and none is freed: a list dropped goes back to the free list)
            assert 0 < made <= KEEP and freed == 0, (type_name, got[type_name, maker])
            continue
        assert made == N, (type_name, got[type_name, maker])
        # (late: an object the tracer was not told of is still seen when its block is freed; only
        # objects CPython keeps in its free lists give no block back)
        exact_here = exact or type_name not in FREE_LISTED
        assert freed == N - KEEP if exact_here else freed <= N - KEEP, (type_name, got[type_name, maker],
                                                                        mechanism)
        # (late: each one dropped in the loop is found when the next one takes its memory; the
        # ref tracer alone was told of 1 list of 900 on 3.13.0)
        assert exact or freed >= (N - KEEP) * 9 // 10, (type_name, got[type_name, maker])
    # made in another thread, destroyed in the main one (by list.clear, which tells the tracer):
    # credited to the maker, and to the dropper
    assert got["AcrossThing", "across"][:2] == (N, N)
    assert got["AcrossThing", "drop_all"] == (0, 0, N)
    thing = {t["name"]: t for t in report["types"]}["Thing"]
    assert thing["created"] == N and thing["live"] == KEEP, thing
    if ALLOCATOR:
        # bytes: the blocks of the 100 kept, each the same size class (at least an object header
        # of 16 bytes and a GC header of 16, at most a pymalloc block of 512)
        assert thing["bytes"] % KEEP == 0 and 32 <= thing["bytes"] // KEEP <= 512, thing
    else:
        assert thing["bytes"] is None, thing  # (the ref tracer is told no size)
    assert report["objects"]["untracked"] == 0


def test_each_makers_objects_are_counted_exactly_made_destroyed_and_live(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str], tmp_path: Path,
) -> None:
    trace = tmp_path / "run.ulma"
    result, report = ulma_json([*engine_flags, "--objects", "--no-report", "-o", str(trace), str(PROGRAM),
                                str(N), str(KEEP)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    assert json.loads(result.stdout.strip().splitlines()[-1])["kept"] == 4 * KEEP
    check_made(report)
    # the trace says the same
    out = tmp_path / "trace.json"
    reported = run_process(ulma_command(["report", str(trace), "--json", str(out)]))
    assert reported.returncode == 0, describe(reported)
    assert f"objects ({report['objects']['mechanism']})" in reported.stdout + reported.stderr
    check_made(json.loads(out.read_text()))
    # and the text export has every record: the type, and the function that made the object
    text = run_process(ulma_command(["export", str(trace), "--format", "text", "-o", "-"]))
    assert text.returncode == 0, describe(text)
    lines = [line.split("\t") for line in text.stdout.splitlines() if "\tobj_" in line]
    made, freed, _here = shares(report)["list", "make_lists"]
    for kind, count in (("obj_new", made), ("obj_free", freed)):
        found = [f for f in lines if f[3] == kind and f[4] == "list" and f[5].startswith("make_lists ")]
        assert len(found) == count, (kind, len(found))


def test_objects_types_keeps_only_the_types_named(
    ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    result, report = ulma_json(["--objects-types", "list,Thing", "--no-report", str(PROGRAM), str(N),
                                str(KEEP)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    assert {t["name"] for t in report["types"]} == {"list", "Thing"}
    got = shares(report)
    assert got["Thing", "make_things"][0] == N
    assert 0 < got["list", "make_lists"][0] <= KEEP if ALLOCATOR else got["list", "make_lists"][0] == N


TRACER_SET = """
import ctypes, sys
get = ctypes.pythonapi.PyRefTracer_GetTracer
get.restype, get.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
print(get(None) or 0)
"""


@needs_313
def test_without_objects_no_ref_tracer_is_set_and_the_report_has_no_types(
    ulma_json: UlmaJson, describe: Callable[[Completed], str], tmp_path: Path,
) -> None:
    """The cost with --objects off is nothing: no tracer is installed at all."""
    program = tmp_path / "tracer_set.py"
    program.write_text(TRACER_SET)
    result, report = ulma_json(["--no-report", str(program)])
    assert result.returncode == 0, describe(result)
    assert result.stdout.split()[-1] == "0", result.stdout
    assert report["objects"] is None and report["types"] == []
    result, report = ulma_json(["--objects", "--no-report", str(program)])
    assert result.stdout.split()[-1] != "0", result.stdout  # (the check itself can see one)
    assert report["objects"]["mechanism"] in ("reftracer", "reftracer-late")


OBJECT_ALLOCATOR = """
import ctypes, sys
class Allocator(ctypes.Structure):
    _fields_ = [(n, ctypes.c_void_p) for n in ("ctx", "malloc", "calloc", "realloc", "free")]
got = Allocator()
ctypes.pythonapi.PyMem_GetAllocator(2, ctypes.byref(got))  # PYMEM_DOMAIN_OBJ
for line in open("/proc/self/maps"):
    lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
    if lo <= got.malloc < hi:
        print(line.split()[-1])
"""


def test_without_objects_no_allocator_is_set_and_with_it_ulmas_is(
    ulma_json: UlmaJson, describe: Callable[[Completed], str], tmp_path: Path,
) -> None:
    """The cost with --objects off is nothing: the object allocator is the one python has.  With
    it, ulma's (3.11 and 3.12: the mechanism; 3.13 where the ref tracer is not told of every
    destruction: its frees)."""
    program = tmp_path / "allocator_set.py"
    program.write_text(OBJECT_ALLOCATOR)
    plain = run_process([sys.executable, str(program)])
    assert plain.returncode == 0 and plain.stdout.strip(), describe(plain)
    assert "ulma" not in plain.stdout
    result, report = ulma_json(["--no-report", str(program)])
    assert result.returncode == 0, describe(result)
    assert result.stdout.split()[-1] == plain.stdout.split()[-1], (result.stdout, plain.stdout)
    assert report["objects"] is None and report["types"] == []
    result, report = ulma_json(["--objects", "--no-report", str(program)])
    assert result.returncode == 0, describe(result)
    hooked = report["objects"]["mechanism"] in ("allocator", "reftracer-late")
    assert ("ulma/_core" in result.stdout.split()[-1]) == hooked, (result.stdout, report["objects"])
    if ALLOCATOR or sys.version_info[:3] == (3, 13, 0):
        assert hooked, report["objects"]


TRACEMALLOC_USER = """
import sys, tracemalloc
class Thing:
    pass
def make(n):
    return [Thing() for _ in range(n)]
tracemalloc.start()
kept = make(1000)
snap = tracemalloc.take_snapshot()
tracemalloc.stop()
line = make.__code__.co_firstlineno + 1
seen = sum(s.count for s in snap.statistics("lineno") if s.traceback[0].lineno == line)
print("tracemalloc saw", seen >= 1000, len(kept))
"""


def test_tracemalloc_in_the_program_works_as_under_python_and_ulma_counts_or_says_it_stood_aside(
    ulma_json: UlmaJson, describe: Callable[[Completed], str], tmp_path: Path,
) -> None:
    """3.11, 3.12: tracemalloc's hook goes in front of ulma's allocator and calls it; its stop
    puts ulma's back: the program's tracemalloc sees what it sees under python, ulma every Thing.
    3.13: tracemalloc sets a ref tracer of its own (and clears it when it stops): it sees what it
    sees under python, and ulma says its tracer was displaced."""
    program = tmp_path / "tracemalloc_user.py"
    program.write_text(TRACEMALLOC_USER)
    plain = run_process([sys.executable, str(program)])
    assert plain.returncode == 0 and plain.stdout == "tracemalloc saw True 1000\n", describe(plain)
    result, report = ulma_json(["--objects", "--no-report", str(program)])
    assert result.returncode == 0, describe(result)
    assert result.stdout == plain.stdout
    if not ALLOCATOR:
        assert report["objects"]["displaced"] == 1, report["objects"]
        return
    maker = "make.<locals>.<listcomp>" if sys.version_info < (3, 12) else "make"  # (3.12 inlines it)
    assert shares(report)["Thing", maker][0] == 1000
    assert report["objects"]["displaced"] == 0


def test_an_attach_counts_objects_made_before_it_apart_from_those_it_saw_made(
    tmp_path: Path, describe: Callable[[Completed], str],
) -> None:
    """Objects made before the attach are not counted as made; their destructions are counted,
    apart (freed_untracked)."""
    out = tmp_path / "attach.json"
    with agent_target(PROGRAMS_DIR / "objects_attach.py", tmp_path) as target:
        ran = run_process(ulma_command(["attach", str(target.proc.pid), "--objects", "--duration", "3",
                                        "--no-report", "--json", str(out)]))
        assert ran.returncode == 0, describe(ran)
        code, stdout, err = target.finish()
    assert code == 0 and "done old=1000 new=500 kept=100" in stdout, (code, stdout, err)
    attached = json.loads(out.read_text())
    thing = {t["name"]: t for t in attached["types"]}["Thing"]
    exact = attached["objects"]["mechanism"] in ("reftracer", "allocator")
    assert thing["created"] == 500, thing
    # (old.clear() drops them in C, which tells the tracer: exact even on 3.13.0; on 3.11/3.12 the
    # objects the collector tracked at the attach are known by their blocks)
    assert thing["freed_untracked"] == 1000, thing
    assert thing["freed"] == 400 if exact else thing["freed"] <= 400, thing
    assert [f["name"] for f in thing["by_function"] if f["created"]] == ["make_new"]


def test_go_tool_pprof_reads_the_objects_each_stack_made(
    ulma_json: UlmaJson, describe: Callable[[Completed], str], tmp_path: Path,
) -> None:
    go = shutil.which("go")
    if go is None:
        missing_dependency("`go` is not installed (Debian package golang-go): cannot run go tool pprof")
    trace, out = tmp_path / "run.ulma", tmp_path / "run.pb.gz"
    result, report = ulma_json(["--objects-types", "list,Thing", "--no-report", "-o", str(trace),
                                 str(PROGRAM), str(N), str(KEEP)], cwd=PROGRAMS_DIR)
    assert result.returncode == 0, describe(result)
    exported = run_process(ulma_command(["export", str(trace), "--format", "pprof", "-o", str(out)]))
    assert exported.returncode == 0, describe(exported)
    env = {**os.environ, "PPROF_TMPDIR": str(tmp_path), "HOME": str(tmp_path), "GOCACHE": str(tmp_path)}
    top = subprocess.run([go, "tool", "pprof", "-top", "-sample_index=objects", str(out)],
                         capture_output=True, text=True, timeout=120, env=env, check=False)
    assert top.returncode == 0, top.stderr
    flat = {row[-1]: row[0] for row in (line.split() for line in top.stdout.splitlines()) if len(row) >= 6}
    assert flat.get("make_things") == str(N), top.stdout
    if not ALLOCATOR:
        assert flat.get("make_lists") == str(N), top.stdout
        return
    # the allocator tells sizes: a bytes sample type, each Thing its block's size class
    sized = subprocess.run([go, "tool", "pprof", "-top", "-sample_index=bytes", "-unit=B", str(out)],
                           capture_output=True, text=True, timeout=120, env=env, check=False)
    assert sized.returncode == 0, sized.stderr
    flat = {row[-1]: row[0] for row in (line.split() for line in sized.stdout.splitlines()) if len(row) >= 6}
    thing = {t["name"]: t for t in report["types"]}["Thing"]
    each = thing["bytes"] // KEEP  # (the JSON's live bytes: the 100 kept)
    assert 32 <= each <= 512 and flat.get("make_things") == f"{N * each}B", (each, sized.stdout)


def built_extension(name: str, tmp_path: Path) -> Path:
    """tests/programs/NAME.c built as an extension module (warnings are errors; without the
    sanitizers' preloads, which the compiler does not want): its directory."""
    where = tmp_path / name
    where.mkdir()
    out = where / f"{name}{sysconfig.get_config_var('EXT_SUFFIX')}"
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    subprocess.run([*cc, "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror",
                    f"-I{sysconfig.get_paths()['include']}", "-o", str(out),
                    str(PROGRAMS_DIR / f"{name}.c")], check=True, capture_output=True, text=True, env=env)
    return where


@pytest.fixture
def own_tracer(tmp_path: Path) -> Path:
    """tests/programs/own_tracer.c (a ref tracer of the program's own), built."""
    return built_extension("own_tracer", tmp_path)


@pytest.fixture
def static_type(tmp_path: Path) -> Path:
    """tests/programs/static_type.c (an extension's static type), built."""
    return built_extension("static_type", tmp_path)


def test_a_static_type_readied_after_the_start_is_counted(
    static_type: Path, ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    """An extension's static type (no allocation makes it: PyType_Ready) imported after ulma began:
    on 3.11 and 3.12 the allocator learns it by walking the types again, so its objects are seen
    from the first one the walk comes after (at most the first few missed, never more counted;
    the walk stopped at the types it knew once, and saw none of them).  3.13: all, by the tracer."""
    result, report = ulma_json(["--objects", "--no-report", str(PROGRAMS_DIR / "static_type_user.py"),
                                str(static_type)])
    assert result.returncode == 0, describe(result)
    assert result.stdout.split()[-3:] == ["widgets", "1000", "100"], result.stdout
    made, freed, _ = shares(report)["static_type.Widget", "make_widgets"]
    if ALLOCATOR:
        assert 990 <= made <= 1000 and freed == 900, (made, freed)  # (the first few: kept ones)
    else:  # (every one made; destroyed: their blocks go back, late or not)
        assert (made, freed) == (1000, 900), (made, freed)


TRACER_USER = PROGRAMS_DIR / "own_tracer_user.py"


@needs_313
def test_a_programs_own_ref_tracer_set_after_ulmas_works_as_under_python_and_ulma_says_so(
    own_tracer: Path, ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    plain = run_process([sys.executable, str(TRACER_USER), str(own_tracer), "after"])
    assert plain.returncode == 0 and plain.stdout.startswith("lists="), describe(plain)
    result, report = ulma_json(["--objects", str(TRACER_USER), str(own_tracer), "after"])
    assert result.returncode == 0, describe(result)
    assert result.stdout == plain.stdout  # its tracer saw what it sees under python
    assert report["objects"]["displaced"] == 1  # and ulma's own stood aside, said
    assert "ref tracer in front of ulma's: 1" in result.stderr, result.stderr


@needs_313
def test_an_attach_chains_to_the_programs_own_ref_tracer(
    own_tracer: Path, tmp_path: Path, describe: Callable[[Completed], str],
) -> None:
    """The program's tracer was set first: ulma's, in front of it while attached, passes every
    event on (the program's never misses a list it makes) and counts the lists itself."""
    out = tmp_path / "attach.json"
    stop = tmp_path / "stop"
    proc = subprocess.Popen([sys.executable, "-m", "ulma.agent", str(TRACER_USER), str(own_tracer), "before",
                             str(stop)], cwd=PROGRAMS_DIR, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for_agent(proc)
        ran = run_process(ulma_command(["attach", str(proc.pid), "--objects", "--duration", "1.5",
                                        "--no-report", "--json", str(out)]))
        assert ran.returncode == 0, describe(ran)
        stop.touch()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (stdout, stderr)
    rounds, missed = (int(word.split("=")[1]) for word in stdout.split())
    assert rounds > 10 and missed == 0, stdout
    lists = {t["name"]: t for t in json.loads(out.read_text())["types"]}["list"]
    made = {f["name"]: f["created"] for f in lists["by_function"]}
    assert 0 < made["make_lists"] <= rounds * 101, made



def test_objects_leave_what_the_program_does_with_its_objects_as_under_python(
    ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    """A C subtype's dealloc calling its base's, a list nested 300 000 deep, __class__ assignment:
    as under plain python (slots wrapped to see objects go broke all three once)."""
    program = PROGRAMS_DIR / "objects_hazards.py"
    plain = run_process([sys.executable, str(program)])
    assert plain.returncode == 0, describe(plain)
    result, report = ulma_json(["--objects", "--no-report", str(program)])
    assert result.returncode == 0, describe(result)
    assert result.stdout == plain.stdout == "odict dropped\ndeep list dropped\nclass reassigned: B\n"
    assert any(t["name"] == "collections.OrderedDict" and t["created"] == 1 for t in report["types"])


def test_subinterpreters_allocating_under_their_own_gil_leave_the_program_whole_and_the_counts_exact(
    ulma_json: UlmaJson, describe: Callable[[Completed], str],
) -> None:
    """Their objects are theirs (another interpreter: not counted), and their allocations, under a
    GIL of their own on 3.12+, never touch ulma's tables (unlocked): that crashed the program once
    (SIGSEGV, 3 runs of 3)."""
    program = PROGRAMS_DIR / "objects_subinterpreters.py"
    result, report = ulma_json(["--objects", "--no-report", str(program)])
    assert result.returncode == 0, describe(result)
    assert result.stdout.split()[-1] == "200000"
    types = {t["name"]: t for t in report["types"]}
    assert (types["Thing"]["created"], types["Thing"]["live"]) == (200_000, 0), types["Thing"]
    assert "T" not in types
