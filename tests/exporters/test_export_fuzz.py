"""`ulma report` and every export format on hostile trace files (tests/hostile_traces.py): files
whose chunks are intact but whose records are hostile, and files put together chunk by chunk
whose headers, zstd frames and JSON records lie too.  Each command writes what its readers can
parse, or says what is wrong in one line; never a traceback, a hang or unbounded memory.

How many examples: the hypothesis profile (tests/conftest.py; "ci" by default, about a minute
for this file per Python; HYPOTHESIS_PROFILE=long for a deeper search)."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import marshal
import math
import pstats
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import given

from tests.hostile_traces import HostileTrace, RawTrace, bounded, chunk_streams, hostile_traces, write
from ulma.cli.main import main
from ulma.exporters.base import FORMATS
from ulma.exporters.text import HEADER


def no_constants(name: str) -> Any:
    raise AssertionError(f"{name} is not JSON")  # NaN and Infinity: readers other than Python's refuse them


def strict_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=no_constants)


def check_text(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[0] + "\n" == HEADER and lines[-1] == "", lines[:2]
    last: dict[str, int] = {}
    for line in lines[1:-1]:
        fields = line.split("\t")
        assert len(fields) == 6, line
        t, tid = int(fields[0]), fields[2]
        assert t >= last.get(tid, t), f"time went back in thread {tid}: {line}"
        last[tid] = t


def check_chrome(path: Path) -> None:
    events = strict_json(path)
    for e in events:
        assert e["ph"] in ("X", "M", "C", "P"), e
        if e["ph"] == "X":
            assert e["ts"] >= 0 and e["dur"] >= 0, e
        if e["ph"] == "C":  # a native counter's value: 60 bits, signed (records.h)
            assert e["ts"] >= 0 and -(1 << 59) <= e["args"]["value"] < 1 << 59, e


def check_speedscope(path: Path) -> None:
    data = strict_json(path)
    frames = data["shared"]["frames"]
    for profile in data["profiles"]:
        stack: list[int] = []
        last = profile["startValue"]
        for e in profile["events"]:
            assert 0 <= e["frame"] < len(frames) and e["at"] >= last, e
            last = e["at"]
            if e["type"] == "O":
                stack.append(e["frame"])
            else:
                assert stack and stack.pop() == e["frame"], "a frame closed that was not on top"
        assert not stack and profile["endValue"] >= last


def check_collapsed(path: Path) -> None:
    for line in path.read_text(encoding="utf-8").split("\n")[:-1]:
        stack, ns = line.rsplit(" ", 1)
        assert stack and int(ns) > 0 and "\r" not in line, line


def protobuf_fields(data: bytes) -> int:
    """Walks a protobuf message's top-level fields (varints and length-delimited); their count."""
    at, count = 0, 0

    def varint() -> int:
        nonlocal at
        value, shift = 0, 0
        while True:
            byte = data[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while at < len(data):
        key = varint()
        if key & 7 == 0:
            varint()
        else:
            assert key & 7 == 2, f"wire type {key & 7}"
            length = varint()
            at += length
            assert at <= len(data), "a field runs past the end"
        count += 1
    return count


def check_pprof(path: Path) -> None:
    assert protobuf_fields(gzip.decompress(path.read_bytes())) > 0


def check_pstats(path: Path) -> None:
    if marshal.loads(path.read_bytes()) == {}:
        return  # nothing was called: pstats refuses an empty profile, as it does cProfile's
    stats: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    for cc, nc, tt, ct, _callers in stats.values():
        assert cc >= 0 and nc >= 0 and math.isfinite(tt) and math.isfinite(ct), (cc, nc, tt, ct)


def check_html(path: Path) -> None:
    """The page's embedded data parses (no NaN), and every flame frame holds its children."""
    text = path.read_text(encoding="utf-8")
    start = text.index('<script id="ulma-data" type="application/json">') + 47
    data = json.loads(text[start:text.index("</script>", start)], parse_constant=no_constants)
    frames = [data["flame"]]
    while frames:
        frame = frames.pop()
        assert frame["value"] >= sum(c["value"] for c in frame["children"]) >= 0, frame["name"]
        frames.extend(frame["children"])


CHECKS = {"text": check_text, "chrome": check_chrome, "speedscope": check_speedscope,
          "collapsed": check_collapsed, "pprof": check_pprof, "pstats": check_pstats, "html": check_html}


def test_every_export_format_is_fuzzed() -> None:
    assert set(CHECKS) == set(FORMATS)


def run_cli(argv: list[str]) -> tuple[int, str]:
    """`ulma ARGV` in this process: (exit code, stderr).  An exception escaping main() is what a
    user would see as a traceback: it fails the test."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return code, stderr.getvalue()


def assert_warnings_or_one_error(code: int, err: str) -> bool:
    """Whether the command succeeded (then every line on stderr is a warning); else exactly one
    error line."""
    lines = err.splitlines()
    if code != 0:
        assert len(lines) == 1 and lines[0].startswith("ulma: error: "), (code, lines)
        return False
    assert all(line.startswith("ulma: warning: ") for line in lines), lines
    return True


@given(t=st.one_of(hostile_traces(), chunk_streams()))
def test_hostile_traces_give_a_report_and_every_export_or_one_error_line(
        tmp_path: Path, t: HostileTrace | RawTrace) -> None:
    """The report's counts come from the records there are; every export parses."""
    path, report = tmp_path / "hostile.ulma", tmp_path / "report.json"
    report.unlink(missing_ok=True)
    write(path, t)
    with bounded(30):
        code, err = run_cli(["report", str(path), "--json", str(report)])
        if assert_warnings_or_one_error(code, err):
            data = strict_json(report)
            calls = sum(f["calls"] + f["resumes"] for f in data["functions"])
            assert calls <= t.record_count, (calls, t.record_count)  # a record is at most one call
            for f in data["functions"]:
                assert f["self_ns"] <= f["total_ns"], f
        for fmt in sorted(FORMATS):
            out = tmp_path / f"out.{fmt}"
            out.unlink(missing_ok=True)
            code, err = run_cli(["export", str(path), "--format", fmt, "-o", str(out)])
            if assert_warnings_or_one_error(code, err):
                CHECKS[fmt](out)
            else:
                assert not out.exists(), "a failed export leaves no file behind"
