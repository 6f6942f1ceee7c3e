"""The script's source is read and compiled as plain python reads it (the bootstrap compiles it
without the builtin compile(): ulma._core.compile_program): a PEP 263 coding declaration, a UTF-8
byte-order mark, `from __future__` and a syntax error give what they give under python."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

Completed = subprocess.CompletedProcess[str]
RunFn = Callable[..., Completed]

SOURCES = {
    "latin1_cookie": b"# -*- coding: latin-1 -*-\nprint(ascii('caf\xe9'), len('\xe9\xe8'))\n",
    "utf8_bom": b"\xef\xbb\xbfprint(ascii('\xc3\xa9t\xc3\xa9'))\n",
    "future_annotations": (b"from __future__ import annotations\n"
                           b"def f(x: nowhere): pass\nprint(f.__annotations__)\n"),
    "syntax_error": b"print('before')\nx = (1,\n",
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_a_script_prints_and_fails_as_under_python(
    name: str, engine_flags: list[str], run_python: RunFn, run_ulma: RunFn, tmp_path: Path,
    describe: Callable[[Completed], str]
) -> None:
    script = tmp_path / f"{name}.py"
    script.write_bytes(SOURCES[name])
    plain = run_python([str(script)])
    profiled = run_ulma(["run", *engine_flags, "--no-report", str(script)])
    assert (profiled.returncode, profiled.stdout) == (plain.returncode, plain.stdout), describe(profiled)
    if plain.returncode:
        assert profiled.stderr.splitlines()[-2:] == plain.stderr.splitlines()[-2:], describe(profiled)
