"""Each export format read back by a real reader (go tool pprof, speedscope's schema, json) and
checked against the report of the same recording."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import missing_dependency, run_process, ulma_command
from tests.exporters.conftest import Recording
from ulma.exporters.collapsed import label

RecordFn = Callable[[str], Recording]
ExportFn = Callable[[Recording, str], Path]


def test_go_tool_pprof_reads_the_pprof_export_and_lists_the_hot_function_first(
        tmp_path: Path, record: RecordFn, export: ExportFn) -> None:
    go = shutil.which("go")
    if go is None:
        missing_dependency("`go` is not installed (Debian package golang-go): cannot run go tool pprof")
    out = export(record("report_hot.py"), "pprof")
    env = {**os.environ, "PPROF_TMPDIR": str(tmp_path), "HOME": str(tmp_path), "GOCACHE": str(tmp_path)}
    result = subprocess.run([go, "tool", "pprof", "-top", str(out)], capture_output=True, text=True,
                            timeout=120, env=env, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["flat", "flat%"])
    rows = [line.split() for line in lines[header + 1:]]
    assert rows and rows[0][-1] == "hot", result.stdout  # most flat (self) wall time
    assert "<module>" in {row[-1] for row in rows}, "pprof must not 'demangle' <module> away"
    assert "Type: wall" in result.stdout
    calls = subprocess.run([go, "tool", "pprof", "-top", "-sample_index=calls", str(out)],
                           capture_output=True, text=True, timeout=120, env=env, check=False)
    cold = next(row for row in (line.split() for line in calls.stdout.splitlines()) if row[-1:] == ["cold"])
    assert cold[0] == "100", calls.stdout  # cold() is called 100 times


def test_pprof_samples_carry_the_python_name_of_their_thread(
        tmp_path: Path, record: RecordFn, export: ExportFn) -> None:
    go = shutil.which("go")
    if go is None:
        missing_dependency("`go` is not installed (Debian package golang-go): cannot run go tool pprof")
    out = export(record("named_threads.py"), "pprof")
    env = {**os.environ, "PPROF_TMPDIR": str(tmp_path), "HOME": str(tmp_path), "GOCACHE": str(tmp_path)}
    for index in range(3):  # the program's worker-i calls square 100 * (i + 1) times
        result = subprocess.run([go, "tool", "pprof", "-top", "-sample_index=calls",
                                 f"-tagfocus=thread=worker-{index} ", str(out)],
                                capture_output=True, text=True, timeout=120, env=env, check=False)
        assert result.returncode == 0, result.stderr
        square = next((row for row in (line.split() for line in result.stdout.splitlines())
                       if row[-1:] == ["square"]), None)
        assert square is not None and square[0] == str(100 * (index + 1)), result.stdout


def balanced(events: list[tuple[str, int, int]]) -> None:
    """events: (type "O"/"C", frame, at) of one profile; must nest like calls and never go back."""
    stack: list[int] = []
    last = events[0][2] if events else 0
    for kind, frame, at in events:
        assert at >= last, "time went backwards"
        last = at
        if kind == "O":
            stack.append(frame)
        else:
            assert stack and stack.pop() == frame, "a frame closed that was not on top"
    assert not stack, "frames left open"


def compact(text: str) -> bool:
    """JSON written without spaces: outside its strings, no whitespace but line ends."""
    outside = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    return not re.search(r"[ \t\r]", outside)


def test_compact_is_true_only_without_spaces_outside_strings() -> None:
    assert compact('{"name":"a b, c: \\" d",\n"at":1}')
    assert not compact('{"name": "a"}') and not compact('{"a":1, "b":2}')


def test_speedscope_export_validates_against_speedscopes_schema(
        record: RecordFn, export: ExportFn, speedscope_schema: dict[str, Any]) -> None:
    recording = record("threads.py")
    text = export(recording, "speedscope").read_text()
    assert compact(text)  # the README's form: fewer bytes to write
    data = json.loads(text)
    jsonschema.validate(data, speedscope_schema)
    assert len(data["profiles"]) == recording.report["threads"] == 5  # one per thread
    frames = data["shared"]["frames"]
    entered: Counter[str] = Counter()
    for profile in data["profiles"]:
        assert profile["type"] == "evented" and profile["unit"] == "nanoseconds"
        events = [(e["type"], e["frame"], e["at"]) for e in profile["events"]]
        balanced(events)
        assert profile["startValue"] == events[0][2] and profile["endValue"] == events[-1][2]
        entered.update(frames[f]["name"] for kind, f, _at in events if kind == "O")
    square = recording.function("square")
    assert entered["square"] == square["calls"] + square["resumes"]


def micros_to_ns(value: Decimal) -> int:
    ns = value * 1000
    assert ns == int(ns), f"{value} µs is not a whole number of ns"
    return int(ns)


def test_chrome_trace_has_balanced_nested_slices_per_thread_and_names_them(
        record: RecordFn, export: ExportFn) -> None:
    recording = record("threads.py")
    text = export(recording, "chrome").read_text()
    assert compact(text)  # the README's form: fewer bytes to write
    events = json.loads(text, parse_float=Decimal)  # the array form (speedscope reads it by any name)
    names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert [e for e in events if e["ph"] == "M" and e["name"] == "process_name"]
    slices: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            start = micros_to_ns(Decimal(e["ts"]))
            slices[e["tid"]].append((start, start + micros_to_ns(Decimal(e["dur"])), e["name"]))
        else:
            assert e["ph"] in ("M", "P"), e
    assert len(slices) == 5 and set(slices) <= set(names)  # one named track per thread
    assert sum(1 for n in names.values() if n.startswith("main thread")) == 1
    for tid, spans in slices.items():
        spans.sort(key=lambda s: (s[0], -s[1]))
        stack: list[tuple[int, int, str]] = []
        for start, end, name in spans:
            while stack and not (stack[-1][0] <= start and end <= stack[-1][1]):
                top = stack.pop()
                assert top[1] <= start, f"thread {tid}: {name} {start}..{end} overlaps {top}"
            stack.append((start, end, name))
    square = recording.function("square")
    assert Counter(s[2] for spans in slices.values() for s in spans)["square"] == square["calls"]
    # each thread's CPU profile (for speedscope) gives every function the self time its slices give
    for tid, spans in slices.items():
        self_ns: Counter[str] = Counter()
        for start, end, name in spans:
            self_ns[name] += end - start
            inner = [s for s in spans if start <= s[0] and s[1] <= end and s != (start, end, name)]
            outer = [s for s in inner if not any(o != s and o[0] <= s[0] and s[1] <= o[1] for o in inner)]
            self_ns[name] -= sum(e - s for s, e, _ in outer)
        chunk = next(e for e in events if e["name"] == "ProfileChunk" and e["tid"] == tid)
        profile = chunk["args"]["data"]
        frame = {n["id"]: n["callFrame"]["functionName"] for n in profile["cpuProfile"]["nodes"]}
        samples, deltas = profile["cpuProfile"]["samples"], profile["timeDeltas"]
        sampled: Counter[str] = Counter()
        for node, delta in zip(samples[:-1], deltas[1:], strict=True):  # a sample's time: the next delta
            sampled[frame[node]] += micros_to_ns(Decimal(delta))
        assert +sampled == +self_ns, f"thread {tid}"


@pytest.mark.parametrize("program", ["generators.py", "threads.py", "mutual_recursion.py"])
def test_collapsed_stacks_under_each_root_add_up_to_its_inclusive_time(
        program: str, record: RecordFn, export: ExportFn) -> None:
    recording = record(program)
    per_root: Counter[str] = Counter()
    inner: set[str] = set()
    for line in export(recording, "collapsed").read_text().splitlines():
        stack, ns = line.rsplit(" ", 1)
        frames = stack.split(";")
        per_root[frames[0]] += int(ns)
        inner.update(frames[1:])
        assert int(ns) > 0
    functions = {label(f["name"], f["file"], f["line"]): f for f in recording.report["functions"]}
    roots = [r for r in per_root if r not in inner]  # a root that is never called from elsewhere
    assert roots, per_root
    for root in roots:
        f = functions[root]
        # ns are whole per frame boundary: up to a ns per activation of the root apart
        assert abs(per_root[root] - f["total_ns"]) <= 2 * (f["calls"] + f["resumes"]) + 2, root
    assert any(r.startswith("<module> (") for r in roots)


def test_text_log_has_one_tab_separated_event_per_line(record: RecordFn, export: ExportFn) -> None:
    recording = record("generators.py")
    lines = export(recording, "text").read_text().splitlines()
    assert lines[0] == "# time_ns\tpid\ttid\tkind\tfunction\tfile:line"
    kinds: Counter[tuple[str, str]] = Counter()
    last: dict[str, int] = {}
    for line in lines[1:]:
        time_ns, pid, tid, kind, function, where = line.split("\t")
        assert int(time_ns) >= last.get(tid, 0) and int(pid) > 0
        last[tid] = int(time_ns)
        kinds[(kind, function)] += 1
        if kind == "cpu":
            name, value = function.split("=")
            assert name in ("cpu_ns", "run_delay_ns") and int(value) >= 0 and where == "-"
        elif kind not in ("sync", "sync_after_drop"):
            file, line_no = where.rsplit(":", 1)
            assert file and int(line_no) >= 0
    numbers = recording.function("numbers")
    assert kinds[("call", "numbers")] == numbers["calls"]
    assert kinds[("resume", "numbers")] + kinds[("throw", "numbers")] == numbers["resumes"]
    assert kinds[("yield", "numbers")] > 0 and kinds[("sync", "-")] >= 1
    # every thread's stack restatement comes with a CPU reading (a baseline)
    assert sum(n for (kind, _f), n in kinds.items() if kind == "cpu") >= kinds[("sync", "-")]


def test_text_export_to_standard_output(record: RecordFn) -> None:
    recording = record("generators.py")
    result = run_process(ulma_command(["export", str(recording.trace), "-f", "text", "-o", "-"]))
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("# time_ns\t") and "\tcall\tmain\t" in result.stdout
