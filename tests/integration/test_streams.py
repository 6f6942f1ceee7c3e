"""`--log` and `--jsonl` (ulma run, ulma attach): streams another process reads while the program
runs.  The program (tests/programs/stream_phases.py) waits on a FIFO before each phase, so a phase
is only released once this test -- a separate process reading the files as `tail -f` would -- has
seen the previous one: lines appear while the program runs, with no timing assumption.  Ground
truth is what the program counted itself."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_process, subprocess_env, ulma_command, wait_for_agent

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
PHASES_PROGRAM = PROGRAMS_DIR / "stream_phases.py"
DEADLINE = 90.0
PHASES = 3
N = 3000
LOG_LINE = re.compile(rb"^\d+\t\d+\t\d+\t[a-z_]+\t[^\t]*\t[^\t]*$")


class Tail:
    """Reads a file as it grows, as `tail -f` does; keeps its whole lines (a line is complete
    once its newline is there)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0
        self.rest = b""
        self.lines: list[bytes] = []

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        self.pos += len(data)
        *whole, self.rest = (self.rest + data).split(b"\n")
        self.lines += whole

    def wait_for(self, ready: Callable[[list[bytes]], bool], what: str,
                 proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + DEADLINE
        while True:
            self.poll()
            if ready(self.lines):
                return
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f"{what}: never seen before ulma ended ({proc.returncode})\n{err.decode()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: never seen in {self.path}; it has {len(self.lines)} lines")
            time.sleep(0.01)


def calls_in_log(lines: list[bytes], function: str) -> int:
    return sum(1 for line in lines if line.split(b"\t")[3:5] == [b"call", function.encode()])


def objects(lines: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def calls_in(obj: dict[str, Any], function: str) -> int:
    return sum(f["calls"] for f in obj["functions"]
               if f["name"] == function and f["file"].endswith("stream_phases.py"))


def assert_log_lines(lines: list[bytes]) -> None:
    """Every line is a whole line of the text format (or a comment)."""
    assert lines and lines[0] == b"# time_ns\tpid\ttid\tkind\tfunction\tfile:line"
    for line in lines[1:]:
        assert line.startswith(b"# ulma: ") or LOG_LINE.match(line), line


def assert_jsonl_objects(lines: list[bytes]) -> list[dict[str, Any]]:
    objs = objects(lines)  # each line parses whole
    for obj in objs:
        assert obj["v"] == 1 and isinstance(obj["functions"], list), obj
        assert {"events", "dropped", "ring_fill", "lag_ns", "log_dropped"} <= obj["monitor"].keys()
        for f in obj["functions"]:
            if obj["cpu_readings"]:
                assert f["cpu_ns"] + f["wait_ns"] + f["overhead_ns"] + f["unmeasured_ns"] == f["total_ns"], f
    return objs


@contextmanager
def go_fifo(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """The FIFO the program waits on, held open by this test (O_RDWR: opening never blocks)."""
    go = tmp_path / "go"
    os.mkfifo(go)
    fd = os.open(go, os.O_RDWR)
    try:
        yield go, fd
    finally:
        os.close(fd)


def follow_phases(proc: subprocess.Popen[bytes], go: int, log: Tail, jsonl: Tail) -> None:
    """Releases each phase once both streams showed the one before, while the program waits."""
    for k in range(PHASES + 1):
        if k:
            def in_log(lines: list[bytes], k: int = k) -> bool:
                return calls_in_log(lines, "phase_mark") >= k

            def in_jsonl(lines: list[bytes], k: int = k) -> bool:
                return any(calls_in(o, "phase_mark") >= k and calls_in(o, "work") > (k - 1) * N
                           for o in objects(lines))

            log.wait_for(in_log, f"phase {k - 1} in the log", proc)
            jsonl.wait_for(in_jsonl, f"phase {k - 1} in the jsonl", proc)
            assert proc.poll() is None  # the program still runs: it waits for us
            assert_log_lines(log.lines)
            assert_jsonl_objects(jsonl.lines)
        os.write(go, b"g")


def program_counts(stdout: str) -> dict[str, int]:
    found = re.search(r"work=(\d+) phase_mark=(\d+)", stdout)
    assert found, stdout
    return {"work": int(found[1]), "phase_mark": int(found[2])}


def check_final(log: Tail, jsonl: Tail, truth: dict[str, int]) -> None:
    for t in (log, jsonl):
        t.poll()
        assert t.rest == b"", f"{t.path} ends in the middle of a line"
    assert_log_lines(log.lines)
    assert calls_in_log(log.lines, "work") == truth["work"] == PHASES * N
    assert calls_in_log(log.lines, "phase_mark") == truth["phase_mark"] == PHASES
    objs = assert_jsonl_objects(jsonl.lines)
    assert [o["final"] for o in objs].count(True) == 1 and objs[-1]["final"], objs[-1]
    assert len(objs) >= 2  # at least one object while it ran, and the last
    assert [o["seq"] for o in objs] == list(range(len(objs)))
    assert calls_in(objs[-1], "work") == truth["work"]
    assert calls_in(objs[-1], "phase_mark") == truth["phase_mark"]
    assert objs[-1]["monitor"]["log_dropped"] == 0


def test_run_log_and_jsonl_are_read_while_the_program_runs_and_end_with_its_own_counts(
        tmp_path: Path) -> None:
    log_path, jsonl_path = tmp_path / "events.log", tmp_path / "figures.jsonl"
    with go_fifo(tmp_path) as (go, go_fd):
        proc = subprocess.Popen(
            ulma_command(["run", "--no-live", "--no-report", "--log", str(log_path),
                          "--jsonl", str(jsonl_path), str(PHASES_PROGRAM), str(go), str(PHASES), str(N)]),
            env=subprocess_env(), cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True)
        try:
            log, jsonl = Tail(log_path), Tail(jsonl_path)
            follow_phases(proc, go_fd, log, jsonl)
            out, err = proc.communicate(timeout=DEADLINE)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
    assert proc.returncode == 0, err.decode()
    assert err == b"", err.decode()
    check_final(log, jsonl, program_counts(out.decode()))
    for path in (log_path, jsonl_path):
        assert os.stat(path).st_mode & 0o777 == 0o600


def test_run_with_the_live_view_writes_the_same_streams(tmp_path: Path) -> None:
    """On a terminal (a pseudo-terminal here), with the live view drawing."""
    import pty
    import threading

    log_path, jsonl_path = tmp_path / "events.log", tmp_path / "figures.jsonl"
    with go_fifo(tmp_path) as (go, go_fd):
        env = subprocess_env({"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"})
        args = ["run", "--live", "--live-exit", "--no-report", "--log", str(log_path), "--jsonl",
                str(jsonl_path), str(PHASES_PROGRAM), str(go), str(PHASES), str(N)]
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once (this process has threads)
            try:
                os.execve(sys.executable, ulma_command(args), env)
            finally:
                os._exit(127)
        shown = bytearray()

        def read_terminal() -> None:  # the view must never block on a full terminal
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    return
                if not data:
                    return
                shown.extend(data)

        reader = threading.Thread(target=read_terminal, daemon=True)
        reader.start()
        ended: list[int] = []

        class Waiter:  # what follow_phases asks of a process
            def poll(self) -> int | None:
                if not ended:
                    got, status = os.waitpid(pid, os.WNOHANG)
                    if got:
                        ended.append(os.waitstatus_to_exitcode(status))
                return ended[0] if ended else None

            def communicate(self) -> tuple[bytes, bytes]:
                return b"", bytes(shown[-3000:])

            returncode = None

        try:
            log, jsonl = Tail(log_path), Tail(jsonl_path)
            follow_phases(Waiter(), go_fd, log, jsonl)  # type: ignore[arg-type]
            deadline = time.monotonic() + DEADLINE
            while Waiter().poll() is None:
                assert time.monotonic() < deadline, bytes(shown[-3000:]).decode(errors="replace")
                time.sleep(0.05)
        finally:
            if not ended:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            reader.join(10)
            os.close(fd)
    text = bytes(shown).decode(errors="replace")
    assert ended == [0], text[-3000:]
    assert "\x1b[?1049h" in text  # the view was drawn
    check_final(log, jsonl, program_counts(text))


def test_attach_log_and_jsonl_are_read_while_the_program_runs_and_end_with_its_own_counts(
        tmp_path: Path) -> None:
    log_path, jsonl_path = tmp_path / "events.log", tmp_path / "figures.jsonl"
    with go_fifo(tmp_path) as (go, go_fd):
        target = subprocess.Popen(
            [sys.executable, "-m", "ulma.agent", str(PHASES_PROGRAM), str(go), str(PHASES), str(N)],
            env=subprocess_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        attach: subprocess.Popen[bytes] | None = None
        try:
            wait_for_agent(target)  # type: ignore[arg-type]
            attach = subprocess.Popen(
                ulma_command(["attach", str(target.pid), "--no-live", "--no-report",
                              "--log", str(log_path), "--jsonl", str(jsonl_path)]),
                env=subprocess_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True)
            assert attach.stderr is not None
            said = b""
            deadline = time.monotonic() + DEADLINE
            while b"attached to process" not in said:  # the hooks are on: release the program
                assert time.monotonic() < deadline and attach.poll() is None, said
                if select.select([attach.stderr], [], [], 1.0)[0]:
                    said += os.read(attach.stderr.fileno(), 4096)
            log, jsonl = Tail(log_path), Tail(jsonl_path)
            follow_phases(attach, go_fd, log, jsonl)
            out, err = target.communicate(timeout=DEADLINE)
            _, a_err = attach.communicate(timeout=DEADLINE)  # it sees the program end
        finally:
            for p in (target, attach):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()
    assert target.returncode == 0, err.decode()
    assert attach.returncode == 0, (said + a_err).decode()
    assert "the program ended" in a_err.decode(), a_err.decode()
    check_final(log, jsonl, program_counts(out.decode()))


THREADED = """\
import threading


def leaf(i):
    return i + 1


def branch(n):
    for i in range(n):
        leaf(i)


threads = [threading.Thread(target=branch, args=(4000 + 1000 * k,)) for k in range(3)]
for t in threads:
    t.start()
branch(2000)
for t in threads:
    t.join()
"""


def by_thread(lines: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in lines[1:]:
        out.setdefault(line.split("\t")[2], []).append(line)
    return out


def test_the_log_equals_the_text_export_of_the_trace_written_in_the_same_run(tmp_path: Path) -> None:
    """One format, two writers: each thread's lines are the same, in the same order (lines of
    different threads interleave by drain in the log, by chunk in the trace)."""
    program = tmp_path / "threaded.py"
    program.write_text(THREADED)
    log, trace, export = tmp_path / "run.log", tmp_path / "run.ulma", tmp_path / "export.txt"
    result = run_process(ulma_command(["run", "--no-live", "--no-report", "--log", str(log),
                                       "-o", str(trace), str(program)]), cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    exported = run_process(ulma_command(["export", "-f", "text", "-o", str(export), str(trace)]))
    assert exported.returncode == 0, exported.stderr
    logged, converted = log.read_text().splitlines(), export.read_text().splitlines()
    assert logged[0] == converted[0]
    assert len(logged) == len(converted) > 2 * (2000 + 4000 + 5000 + 6000)
    assert by_thread(logged) == by_thread(converted)
    assert len(by_thread(logged)) == 4
    assert sorted(logged) == sorted(converted)


def _bad_place(kind: str, tmp_path: Path) -> Path:
    if kind == "a directory":
        (tmp_path / "dir").mkdir()
        return tmp_path / "dir"
    if kind == "a symbolic link":
        (tmp_path / "victim").write_text("keep me\n")
        (tmp_path / "link").symlink_to(tmp_path / "victim")
        return tmp_path / "link"
    if kind == "a missing directory":
        return tmp_path / "no" / "such" / "out"
    (tmp_path / "plain").write_text("")  # a path under a regular file
    return tmp_path / "plain" / "out"


BAD = ["a directory", "a symbolic link", "a missing directory", "under a file"]


@pytest.mark.parametrize("kind", BAD)
@pytest.mark.parametrize("option", ["--log", "--jsonl"])
def test_run_refuses_a_stream_it_cannot_write_in_one_line_before_the_program_starts(
        tmp_path: Path, option: str, kind: str) -> None:
    bad = _bad_place(kind, tmp_path)
    started = tmp_path / "started"
    program = tmp_path / "prog.py"
    program.write_text(f"open({str(started)!r}, 'w').close()\n")
    result = run_process(ulma_command(["run", "--no-live", option, str(bad), str(program)]), cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ulma: error: cannot write"), result.stderr
    assert "Traceback" not in result.stderr
    assert not started.exists()
    if kind == "a symbolic link":
        assert (tmp_path / "victim").read_text() == "keep me\n"


@pytest.mark.parametrize("kind", BAD)
@pytest.mark.parametrize("option", ["--log", "--jsonl"])
def test_attach_refuses_a_stream_it_cannot_write_in_one_line_before_attaching(
        tmp_path: Path, option: str, kind: str) -> None:
    bad = _bad_place(kind, tmp_path)
    with go_fifo(tmp_path) as (go, _fd):
        target = subprocess.Popen(
            [sys.executable, "-m", "ulma.agent", str(PHASES_PROGRAM), str(go), "1", "1"],
            env=subprocess_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_agent(target)  # type: ignore[arg-type]
            result = run_process(ulma_command(["attach", str(target.pid), "--no-live", option, str(bad)]))
            assert target.poll() is None  # left alone
        finally:
            target.kill()
            target.wait()
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ulma: error: cannot write"), result.stderr
    if kind == "a symbolic link":
        assert (tmp_path / "victim").read_text() == "keep me\n"


def test_two_outputs_naming_one_file_are_refused_in_one_line(tmp_path: Path) -> None:
    program = tmp_path / "prog.py"
    program.write_text("pass\n")
    same = tmp_path / "same"
    result = run_process(ulma_command(["run", "--no-live", "--log", str(same), "--jsonl", str(same),
                                       str(program)]), cwd=tmp_path)
    assert result.returncode != 0 and result.stderr.count("\n") == 1, result.stderr
    assert "named by two outputs" in result.stderr
    assert not same.exists()


SLOW_READER = """\
import sys


def leaf(i):
    return i + 1


for i in range(int(sys.argv[1])):
    leaf(i)
print("calls done", flush=True)
sys.stdin.readline()
print(f"leaf={int(sys.argv[1])}", flush=True)
"""


def test_a_log_whose_reader_is_slow_loses_lines_counted_and_said_never_the_profile(
        tmp_path: Path) -> None:
    """The log is a FIFO nobody reads until the program made 3 million calls (6 million events,
    96 MB of records, more than the log may hold back): the monitor keeps draining, the events it
    could not write are counted, said in the log, in the jsonl and on stderr, and the report has
    every call."""
    program = tmp_path / "slow.py"
    program.write_text(SLOW_READER)
    fifo, jsonl_path, report = tmp_path / "log.fifo", tmp_path / "f.jsonl", tmp_path / "r.json"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # there, so ulma's open does not wait
    calls = 3_000_000
    proc = subprocess.Popen(
        ulma_command(["run", "--no-live", "--no-report", "--log", str(fifo), "--jsonl", str(jsonl_path),
                      "--json", str(report), str(program), str(calls)]),
        env=subprocess_env(), cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True)
    got = bytearray()
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == b"calls done\n"
        proc.stdin.write(b"\n")
        proc.stdin.close()
        os.set_blocking(reader, True)
        while chunk := os.read(reader, 1 << 20):  # now read it all, to its end
            got += chunk
        assert proc.stderr is not None
        err = proc.stderr.read()  # to its end: ulma ended
        proc.wait(timeout=DEADLINE)
    finally:
        os.close(reader)
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    assert proc.returncode == 0, err.decode()
    said = re.search(rb"the log \S+ fell behind: (\d+) events are not in it", err)
    assert said, err.decode()
    dropped = int(said[1])
    lines = bytes(got).split(b"\n")
    assert lines[-1] == b""
    notes = [int(m[1]) for m in (re.match(rb"# ulma: (\d+) events of thread \d+ are not in this log",
                                          line) for line in lines) if m]
    assert notes and sum(notes) == dropped > 0
    assert_log_lines(lines[:-1])
    last = json.loads(jsonl_path.read_text().splitlines()[-1])
    assert last["final"] and last["monitor"]["log_dropped"] == dropped
    doc = json.loads(report.read_text())
    # (a drop by a full ring says the drain stopped: what the log must never make it do)
    assert [f["calls"] for f in doc["functions"] if f["name"] == "leaf"] == [calls], (
        doc["dropped"], doc.get("monitor"), err.decode()[-2000:])
    assert calls_in_log(lines, "leaf") < calls
