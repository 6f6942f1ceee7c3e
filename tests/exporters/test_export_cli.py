"""`ulma export` on bad input: one line `ulma: error: ...`, a non-zero exit, no traceback, and no
output file left behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import run_process, ulma_command
from tests.exporters.conftest import Recording


def assert_one_error_line(args: list[str]) -> str:
    result = run_process(ulma_command(["export", *args]), timeout=60)
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ulma: error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


def test_a_missing_trace_is_one_error_line(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    line = assert_one_error_line([str(tmp_path / "missing.ulma"), "--format", "chrome", "-o", str(out)])
    assert "missing.ulma" in line
    assert not out.exists()


@pytest.mark.parametrize("content", [b"", b"hello, I am not a trace\n" * 10, b"ULMATRCE" + b"\xff" * 40],
                         ids=["empty", "text", "bad-header"])
def test_a_file_that_is_not_a_trace_is_one_error_line(tmp_path: Path, content: bytes) -> None:
    bogus, out = tmp_path / "bogus.ulma", tmp_path / "out.txt"
    bogus.write_bytes(content)
    assert_one_error_line([str(bogus), "--format", "text", "-o", str(out)])
    assert not out.exists()


def test_an_unknown_format_is_one_error_line_naming_the_formats(
        tmp_path: Path, record: Callable[[str], Recording]) -> None:
    trace = record("generators.py").trace
    line = assert_one_error_line([str(trace), "--format", "svg", "-o", str(tmp_path / "out.svg")])
    assert "svg" in line and "speedscope" in line


def test_an_output_that_cannot_be_written_is_one_error_line(
        tmp_path: Path, record: Callable[[str], Recording]) -> None:
    trace = record("generators.py").trace
    line = assert_one_error_line([str(trace), "--format", "pprof", "-o", str(tmp_path / "no" / "out.pb.gz")])
    assert "cannot write" in line


def test_exporting_over_the_trace_itself_is_refused(record: Callable[[str], Recording]) -> None:
    trace = record("generators.py").trace
    size = trace.stat().st_size
    assert "trace itself" in assert_one_error_line([str(trace), "--format", "text", "-o", str(trace)])
    assert trace.stat().st_size == size


@pytest.mark.parametrize("args", [[], ["x.ulma"], ["x.ulma", "--format", "text"]],
                         ids=["nothing", "no-format", "no-output"])
def test_missing_arguments_are_one_error_line(args: list[str]) -> None:
    assert_one_error_line(args)
