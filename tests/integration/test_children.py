"""`ulma run` follows child processes: forks, exec'd Pythons, multiprocessing workers.

The ground truth is each program's own count of the calls it made (printed on stdout): the merged
view's counts must equal it exactly, the program's own row must hold only the parent's calls, and
the children's rows must add up to the rest.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_process, ulma_command

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
POOL = PROGRAMS_DIR / "children_pool.py"
FORK_EXIT = PROGRAMS_DIR / "children_fork_exit.py"
SUBPROCESS = PROGRAMS_DIR / "children_subprocess.py"
SRC = Path(__file__).resolve().parents[2] / "src"

Completed = subprocess.CompletedProcess[str]
UlmaJson = Callable[..., tuple[Completed, dict[str, Any]]]


def truth(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"^(\w+) (.*)$", stdout, re.M))


def calls_of(functions: list[Mapping[str, Any]], program: Path, name: str) -> int:
    """Calls of `name` defined in `program` (0 if absent); a function listed twice is added up, so a
    merge that failed to merge shows up in the per-row checks, not here."""
    return sum(f["calls"] for f in functions
               if f["name"] == name and os.path.realpath(f["file"]) == os.path.realpath(program))


def rows_of(functions: list[Mapping[str, Any]], program: Path, name: str) -> int:
    return sum(1 for f in functions
               if f["name"] == name and os.path.realpath(f["file"]) == os.path.realpath(program))


def children_of(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    processes: list[dict[str, Any]] = report["processes"]
    assert processes[0]["how"] == "main" and processes[0]["profiled"], processes[0]
    return processes[1:]


def assert_merged(report: Mapping[str, Any], program: Path, name: str, made: int, why: str) -> None:
    """`name`'s calls: the merged row says `made`, one row only; the processes' own rows add up to it."""
    assert rows_of(report["functions"], program, name) == 1, why
    assert calls_of(report["functions"], program, name) == made, why
    per_process = sum(calls_of(p.get("functions", []), program, name) for p in report["processes"])
    assert per_process == made, why


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_pools_workers_are_followed_and_their_counts_add_up_to_the_programs(
    method: str, engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str]
) -> None:
    result, report = ulma_json([*engine_flags, "--no-report", str(POOL), method], cwd=PROGRAMS_DIR,
                               timeout=180)
    why = describe(result)
    assert result.returncode == 0, why
    made = truth(result.stdout)
    assert report["dropped"] == 0, why
    assert_merged(report, POOL, "leaf", int(made["leaf"]), why)
    assert_merged(report, POOL, "task", int(made["task"]), why)
    assert_merged(report, POOL, "parent_leaf", int(made["parent_leaf"]), why)
    main, children = report["processes"][0], children_of(report)
    # the program's own row: its calls, none of its workers'
    assert calls_of(main["functions"], POOL, "leaf") == 0, why
    assert calls_of(main["functions"], POOL, "parent_leaf") == int(made["parent_leaf"]), why
    workers = [p for p in children if calls_of(p.get("functions", []), POOL, "task")]
    assert workers and all(p["profiled"] for p in workers), why
    assert {p["how"] for p in workers} == {"exec" if method == "spawn" else "fork"}, why
    assert all(str(POOL) in p["command"] or "multiprocessing" in p["command"] for p in workers), why
    # every thread's events are counted, the children's included
    assert report["events"] == sum(p.get("events", 0) for p in report["processes"]), why
    assert report["forked_children"] == 0, why


def test_forked_children_that_exit_or_are_killed_are_followed_with_exact_counts(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str]
) -> None:
    result, report = ulma_json([*engine_flags, str(FORK_EXIT)], cwd=PROGRAMS_DIR, timeout=120)
    why = describe(result)
    assert result.returncode == 0, why
    made = truth(result.stdout)
    assert report["dropped"] == 0, why
    assert_merged(report, FORK_EXIT, "child_leaf", int(made["child_leaf"]), why)
    assert_merged(report, FORK_EXIT, "parent_leaf", int(made["parent_leaf"]), why)
    pids = sorted(int(p) for p in made["pids"].split())
    children = children_of(report)
    assert sorted(p["pid"] for p in children) == pids, why
    each = int(made["child_leaf"]) // len(pids)
    for p in children:  # os._exit, sys.exit and SIGKILL alike: each child's calls, all of them
        assert p["how"] == "fork" and p["profiled"], why
        assert calls_of(p["functions"], FORK_EXIT, "child_leaf") == each, f"child {p['pid']}\n{why}"
        assert calls_of(p["functions"], FORK_EXIT, "parent_leaf") == 0, why
        assert str(FORK_EXIT) in p["command"], why
    assert report["forked_children"] == 0, why
    # the report names every process with its pid
    for pid in pids:
        assert re.search(rf"^\s*{pid}\s+fork\b", result.stderr, re.M), why
    assert f"processes {len(pids) + 1}" in result.stderr, why
    assert "ran unprofiled" not in result.stderr, why


def test_with_no_children_forked_children_run_unprofiled_and_are_counted(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str]
) -> None:
    result, report = ulma_json([*engine_flags, "--no-children", str(FORK_EXIT)], cwd=PROGRAMS_DIR,
                               timeout=120)
    why = describe(result)
    assert result.returncode == 0, why
    made = truth(result.stdout)
    assert "processes" not in report, why
    assert calls_of(report["functions"], FORK_EXIT, "child_leaf") == 0, why
    assert calls_of(report["functions"], FORK_EXIT, "parent_leaf") == int(made["parent_leaf"]), why
    assert report["forked_children"] == len(made["pids"].split()), why
    assert f"{len(made['pids'].split())} forked children ran unprofiled" in result.stderr, why


def test_a_python_subprocess_is_followed_with_exact_counts(
    engine_flags: list[str], ulma_json: UlmaJson, describe: Callable[[Completed], str]
) -> None:
    result, report = ulma_json([*engine_flags, str(SUBPROCESS)], cwd=PROGRAMS_DIR, timeout=120)
    why = describe(result)
    assert result.returncode == 0, why
    made = truth(result.stdout)
    assert report["dropped"] == 0, why
    assert_merged(report, SUBPROCESS, "child_leaf", int(made["child_leaf"]), why)
    assert_merged(report, SUBPROCESS, "parent_leaf", int(made["parent_leaf"]), why)
    children = children_of(report)
    (child,) = [p for p in children if p["pid"] == int(made["child_pid"])]
    assert child["how"] == "exec" and child["profiled"] and child["status"].startswith(("exit 0", "ended"))
    assert f"{SUBPROCESS} child" in child["command"], why
    assert calls_of(child["functions"], SUBPROCESS, "child_leaf") == int(made["child_leaf"]), why
    # ulma's own start-up in the child is not reported as the child's
    assert not any("ulma" + os.sep + "agent" in f["file"] for f in child["functions"]), why
    # the child that is not Python (it lives 1 s: the monitor looks at /proc 4 times a second)
    (sleep,) = [p for p in children if p["command"] == "sleep 1"]
    assert not sleep["profiled"] and sleep["status"].startswith("unprofiled: not Python"), why
    assert len(children) == 2, why


def _python_ulma_cannot_load() -> str | None:
    """A Python interpreter on this machine that cannot import ulma's C core from where this ulma
    lives (the source tree, or an installed ulma's site-packages), as a child's sitecustomize tries."""
    import ulma

    home = str(Path(ulma.__file__).resolve().parents[1])
    candidates = [shutil.which(f"python3.{minor}") for minor in range(8, 15)]
    candidates += glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[0-9]*/bin/python3"))
    for exe in filter(None, candidates):
        try:
            with open(exe, "rb") as f:
                if f.read(4) != b"\x7fELF":
                    continue  # a wrapper script (pyenv's shims): a process of its own before the Python
            probe = subprocess.run(
                [exe, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                 "print('%d%d' % sys.version_info[:2]); from ulma._core import agent_start", home],
                capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        tag = probe.stdout.strip()
        if probe.returncode != 0 and tag.isdigit() and int(tag[1:]) >= 6:
            return exe
    return None


def test_a_python_ulma_cannot_load_into_is_listed_unprofiled(
    tmp_path: Path, ulma_json: UlmaJson, describe: Callable[[Completed], str]
) -> None:
    other = _python_ulma_cannot_load()
    if other is None:
        pytest.skip("no Python here of a version ulma's agent is not built for")
    program = tmp_path / "other_python.py"
    program.write_text(f"import subprocess\nsubprocess.run([{other!r}, '-c', 'print(6 * 7)'], check=True)\n")
    result, report = ulma_json([str(program)], cwd=tmp_path, timeout=120)
    why = describe(result)
    assert result.returncode == 0 and "42" in result.stdout, why
    (child,) = children_of(report)
    assert not child["profiled"] and child["status"].startswith("unprofiled: cannot load ulma"), why
    assert "1 unprofiled" in result.stderr, why


def test_hostile_connections_to_the_childrens_socket_do_not_hang_the_monitor(
    tmp_path: Path, ulma_json: UlmaJson, describe: Callable[[Completed], str]
) -> None:
    # A program that talks to ulma's socket itself: garbage, a silent connection it keeps open, a
    # request for a session it never uses, then a real fork whose calls must still be counted.
    program = tmp_path / "hostile.py"
    program.write_text(
        "import os, socket, sys, time\n"
        "address = '\\0' + os.environ['ULMA_CHILDREN'][1:]\n"
        "def talk(data):\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    s.connect(address)\n"
        "    try:\n"
        "        s.sendall(data)\n"
        "    except OSError:\n"
        "        pass  # ulma may close a garbage connection before all of it is sent\n"
        "    return s\n"
        "kept = [talk(b'\\xff' * 5000), talk(b''), talk(b'CHILD ULMA1 fork zz\\n'),\n"
        "        talk(b'CHILD ULMA1 exec -\\n'), talk(b'UNPROFILED ULMA1 zz\\n')]\n"
        "def leaf():\n"
        "    pass\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    for _ in range(1000):\n"
        "        leaf()\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print('done', flush=True)\n"
    )
    started = time.monotonic()
    result, report = ulma_json(["--no-report", str(program)], cwd=tmp_path, timeout=60)
    why = describe(result)
    assert result.returncode == 0 and "done" in result.stdout, why
    assert time.monotonic() - started < 40, why
    assert calls_of(report["functions"], program, "leaf") == 1000, why
    pids = [p["pid"] for p in report["processes"]]
    assert len(pids) == len(set(pids)) == 2, why  # the program and its one real child


ASK_FOR_SESSION = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect("\\0" + sys.argv[1])
try:
    s.sendall(b"CHILD ULMA1 fork -\\n")
    msg, anc, _flags, _addr = s.recvmsg(1024, socket.CMSG_SPACE(16))
except OSError:
    msg, anc = b"", []
print("OK" if msg.startswith(b"OK ") else "nothing", len(anc))
"""


def test_the_childrens_socket_gives_a_session_to_the_user_only(tmp_path: Path) -> None:
    # The address is abstract (no file to plant, none to follow) and unguessable; the monitor reads
    # a peer's uid before a byte and closes another user's connection.  Checked by a real
    # connection as our own user (a session comes) and as another user (nothing comes).
    from ulma.monitor.children import ADDRESS_PREFIX, Children
    from ulma.monitor.session import Options

    # a Python the other user may run (ours may be under /root)
    python = next((p for p in ("/usr/bin/python3", sys.executable) if os.access(p, os.X_OK)), "")
    if os.getuid() != 0 or not python.startswith("/usr/"):
        pytest.skip("connecting as another user needs root and a system python3 (Debian's python3)")
    children = Children(Options("monitoring" if sys.version_info >= (3, 12) else "pep523"))
    try:
        assert children.address.startswith("\0" + ADDRESS_PREFIX)
        assert len(children.address) >= len(ADDRESS_PREFIX) + 24
        answers = {}
        for uid in (0, 65534):  # a process of that user asks for a session and says what it got
            asked = subprocess.run([python, "-c", ASK_FOR_SESSION, children.address[1:]], user=uid,
                                   cwd="/", capture_output=True, text=True, timeout=60)
            answers[uid] = asked.stdout.strip() or asked.stderr
    finally:
        rows = children.finish(0)
    assert answers == {0: "OK 1", 65534: "nothing 0"}, answers
    assert len(rows) == 1 and rows[0].how == "fork"


def test_jsonl_lines_count_a_running_child_as_the_report_does(tmp_path: Path) -> None:
    """While the child runs, --jsonl lines have a row for it ("running", its calls so far) beside
    the program's, and their functions add its calls in, as the report does; the last line has
    it ended with every call it made (the program's own count)."""
    program = PROGRAMS_DIR / "children_jsonl.py"
    jsonl = tmp_path / "run.jsonl"
    result = run_process(ulma_command(["run", "--no-report", "--jsonl", str(jsonl), str(program)]),
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    facts = truth(result.stdout)
    child, made = int(facts["child"]), int(facts["child_leaf"])
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    running = [line for line in lines if not line["final"]
               and any(p["pid"] == child and p["status"] == "running" for p in line.get("processes", []))]
    assert running, [line.get("processes") for line in lines]
    for line in running:
        (row,) = [p for p in line["processes"] if p["pid"] == child]
        seen = calls_of(row["functions"], program, "child_leaf")
        assert 0 < seen <= made and line["processes"][0]["how"] == "main", row
        assert calls_of(line["functions"], program, "child_leaf") == seen
    last = lines[-1]
    assert last["final"]
    (row,) = [p for p in last["processes"] if p["pid"] == child]
    # (its parent waited for it at once: no zombie left in /proc to read its status from)
    assert row["status"] in ("exit 0", "ended") and calls_of(row["functions"], program, "child_leaf") == made
    assert calls_of(last["functions"], program, "child_leaf") == made
    assert calls_of(last["functions"], program, "parent_leaf") == int(facts["parent_leaf"])
