"""Recordings shared by the exporter tests: each program is recorded once per
test session, with the JSON report of the same run beside its trace."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing_dependency, run_process, ulma_command

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
SPEEDSCOPE_PACKAGE = "speedscope@1.25.0"  # its dist/release/file-format-schema.json


@dataclass(frozen=True)
class Recording:
    program: Path
    trace: Path
    report: dict[str, Any]  # `ulma report --json` of the trace
    returncode: int

    def function(self, name: str) -> dict[str, Any]:
        """The report's entry for `name` defined in the program."""
        found: list[dict[str, Any]] = [f for f in self.report["functions"]
                 if f["name"] == name and Path(f["file"]).resolve() == self.program.resolve()]
        assert len(found) == 1, f"expected one {name} in {self.program.name}'s report, found {found}"
        return found[0]


@pytest.fixture(scope="session")
def record(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Recording]:
    """record(program) -> Recording of tests/programs/<program> under `ulma record` (cached)."""
    cache: dict[str, Recording] = {}
    folder = tmp_path_factory.mktemp("recordings")

    def get(program: str) -> Recording:
        if program not in cache:
            path = PROGRAMS_DIR / program
            trace, report = folder / f"{path.stem}.ulma", folder / f"{path.stem}.json"
            result = run_process(ulma_command(["record", "-o", str(trace), str(path)]), cwd=PROGRAMS_DIR)
            assert trace.exists(), f"recording failed:\n{result.stderr}"
            # The report of the file, not of the live run: the trace's END record has the
            # clock calibration of the whole run, which the live report did not have yet.
            reported = run_process(ulma_command(["report", str(trace), "--json", str(report)]))
            assert reported.returncode == 0 and report.exists(), reported.stderr
            cache[program] = Recording(path, trace, json.loads(report.read_text()), result.returncode)
        return cache[program]

    return get


@pytest.fixture
def export(tmp_path: Path) -> Callable[[Recording, str], Path]:
    """export(recording, format) -> the file `ulma export` wrote (the command must succeed quietly)."""

    def run(recording: Recording, fmt: str) -> Path:
        out = tmp_path / f"{recording.program.stem}.{fmt}"
        result = run_process(ulma_command(["export", str(recording.trace), "--format", fmt, "-o", str(out)]))
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", result.stderr
        assert out.exists()
        return out

    return run


@pytest.fixture(scope="session")
def speedscope_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """speedscope's web app as published on npm (its package's dist/release folder), unpacked."""
    npm = shutil.which("npm")
    if npm is None:
        missing_dependency("npm is not installed (Debian package npm): cannot fetch speedscope")
    folder = tmp_path_factory.mktemp("speedscope")
    try:
        subprocess.run([npm, "pack", SPEEDSCOPE_PACKAGE, "--silent", "--pack-destination", str(folder)],
                       cwd=folder, check=True, capture_output=True, timeout=180)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        stderr = exc.stderr.decode(errors="replace").strip().splitlines()[-1:] if exc.stderr else []
        missing_dependency(f"`npm pack {SPEEDSCOPE_PACKAGE}` failed (no npm registry?): "
                           f"{' '.join(stderr) or exc}")
    (tarball,) = folder.glob("speedscope-*.tgz")
    with tarfile.open(tarball) as tar:
        tar.extractall(folder, filter="data")
    release = folder / "package" / "dist" / "release"
    assert (release / "index.html").exists(), "the speedscope package no longer ships its app there"
    return release


@pytest.fixture(scope="session")
def speedscope_schema(speedscope_app: Path) -> dict[str, Any]:
    """speedscope's published file-format JSON schema, from its npm package."""
    schema = speedscope_app / "file-format-schema.json"
    assert schema.exists(), "the speedscope package no longer ships its schema there"
    loaded: dict[str, Any] = json.loads(schema.read_text())
    return loaded
