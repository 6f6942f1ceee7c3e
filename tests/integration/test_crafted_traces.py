"""Crafted trace files (tests/hostile_traces.py, CRAFTED: one per defect of issue 10) read by
`ulma report` and `ulma export` in every format, as a user would run them: each run ends within
30 s in 1 GiB of address space, with exit code 0 and the warning due, or one error line -- never
a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import subprocess_env, ulma_command
from tests.hostile_traces import CRAFTED, LIMIT_MEMORY, LIMIT_SECONDS, SANITIZED, run_limited
from ulma.exporters.base import FORMATS

COMMANDS = {"report": ["report"], **{fmt: ["export", "--format", fmt] for fmt in FORMATS}}

@pytest.fixture(scope="module")
def crafted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("crafted")
    for name, crafted in CRAFTED.items():
        crafted.write(where / f"{name}.ulma")
    return where


def cases() -> list[object]:
    return [pytest.param(name, command, id=f"{name}-{command}") for name in CRAFTED for command in COMMANDS]


@pytest.mark.parametrize(("name", "command"), cases())
def test_a_crafted_trace_gives_its_warning_or_one_error_line_within_time_and_memory(
        crafted_dir: Path, tmp_path: Path, name: str, command: str) -> None:
    crafted = CRAFTED[name]
    path = crafted_dir / f"{name}.ulma"
    argv = [*COMMANDS[command], str(path)]
    if command in FORMATS:
        argv += ["-o", str(tmp_path / "out")]
    out = run_limited(ulma_command(argv), env=subprocess_env())
    assert out.code is not None, f"still running after {LIMIT_SECONDS} s"
    assert "Traceback" not in out.stderr and (SANITIZED or out.peak_rss < LIMIT_MEMORY), out
    lines = out.stderr.splitlines()
    if crafted.fails is not None:
        assert out.code != 0 and len(lines) == 1 and lines[0].startswith("ulma: error: "), out
        assert crafted.fails in lines[0], out
        return
    assert out.code == 0 and all(line.startswith("ulma: warning: ") for line in lines), out
    if crafted.warns is not None:
        assert any(crafted.warns in line for line in lines), out
