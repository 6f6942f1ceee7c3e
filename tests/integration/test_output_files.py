"""Every file ulma writes for the user -- the --json report of run, record, report and attach, the -o
trace of run and record, each export format -- is created 0600 whatever the umask, replaces a regular
file in its place without writing into it, and is never written through a symbolic link planted in
its place: that is refused in one line, and what the link points to stays as it was."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import agent_target, run_process, ulma_command

PROGRAMS_DIR = Path(__file__).resolve().parents[1] / "programs"
TARGET = PROGRAMS_DIR / "attach_target.py"
FORMATS = ["text", "chrome", "speedscope", "pprof", "collapsed", "pstats"]

Completed = subprocess.CompletedProcess[str]

PROGRAM = """\
def leaf(i):
    return i + 1


for i in range(2000):
    leaf(i)
"""


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small program and a trace of it, for the commands that read one."""
    where = tmp_path_factory.mktemp("made")
    program = where / "prog.py"
    program.write_text(PROGRAM)
    trace = where / "prog.ulma"
    result = run_process(ulma_command(["record", "-o", str(trace), str(program)]), cwd=where)
    assert result.returncode == 0 and trace.exists(), result.stderr
    return program, trace


OUTPUTS = ["run --json", "run -o", "record -o", "record --json", "report --json",
           *(f"export {fmt}" for fmt in FORMATS)]


def command(name: str, out: Path, program: Path, trace: Path) -> list[str]:
    """The ulma arguments with which output `name` writes the file `out`."""
    if name.startswith("export "):
        return ["export", "-f", name.split()[1], "-o", str(out), str(trace)]
    return {
        "run --json": ["run", "--no-report", "--json", str(out), str(program)],
        "run -o": ["run", "--no-report", "-o", str(out), str(program)],
        "record -o": ["record", "-o", str(out), str(program)],
        "record --json": ["record", "-o", str(out.parent / "other.ulma"), "--json", str(out), str(program)],
        "report --json": ["report", "--json", str(out), str(trace)],
    }[name]


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """The umask of this process, which ulma's processes inherit."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def write_with(name: str, out: Path, made: tuple[Path, Path]) -> Completed:
    program, trace = made
    return run_process(ulma_command(command(name, out, program, trace)), cwd=out.parent, timeout=60)


def error_lines(result: Completed) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("ulma: error:")]


@pytest.mark.parametrize("name", OUTPUTS)
def test_each_output_is_created_0600_even_under_umask_0(
    name: str, made: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with umask(0):
        result = write_with(name, out, made)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if "ulma-tmp" in p.name] == []  # no temporary left


@pytest.mark.parametrize("name", OUTPUTS)
def test_an_existing_file_in_place_is_replaced_not_written_into(
    name: str, made: tuple[Path, Path], tmp_path: Path
) -> None:
    out, keep = tmp_path / "out", tmp_path / "keep"
    out.write_text("old contents\n")
    out.chmod(0o644)
    os.link(out, keep)  # the old file under another name: writing into it would show there
    result = write_with(name, out, made)
    assert result.returncode == 0, result.stderr
    assert keep.read_text() == "old contents\n" and stat.S_IMODE(os.stat(keep).st_mode) == 0o644
    assert out.read_bytes() not in (b"", b"old contents\n")
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600


@pytest.mark.parametrize("points_to", ["a file", "nothing yet"])
@pytest.mark.parametrize("name", OUTPUTS)
def test_a_symlink_planted_in_place_is_refused_and_what_it_points_to_stays_untouched(
    name: str, points_to: str, made: tuple[Path, Path], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "victim"
    if points_to == "a file":
        victim.write_text("precious\n")
        victim.chmod(0o644)
        os.utime(victim, ns=(1_000_000_000, 1_000_000_000))
    out = tmp_path / "out"
    out.symlink_to(victim)
    result = write_with(name, out, made)
    assert result.returncode != 0, result.stderr
    assert error_lines(result) == [f"ulma: error: cannot write {out}: a symbolic link is in its place, "
                                   "and ulma writes through none (name the file it points to, or "
                                   "remove the link)"], result.stderr
    assert out.is_symlink() and os.readlink(out) == str(victim)
    if points_to == "a file":
        st = os.stat(victim)
        assert victim.read_text() == "precious\n"
        assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o644, 1_000_000_000)
    else:
        assert not victim.exists()
    assert sorted(p.name for p in elsewhere.iterdir()) == (["victim"] if points_to == "a file" else [])


@pytest.mark.parametrize("name", ["report --json", "export text", "run --json"])
def test_an_output_named_dev_null_is_written_in_place(name: str, made: tuple[Path, Path]) -> None:
    result = write_with(name, Path("/dev/null"), made)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_attach_json_is_0600_under_umask_0_and_refuses_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link, out = tmp_path / "link.json", tmp_path / "attach.json"
    link.symlink_to(victim)
    with agent_target(TARGET, tmp_path) as target:
        pid = str(target.proc.pid)
        with umask(0):
            done = run_process(ulma_command(["attach", pid, "--duration", "0.3", "--no-report", "--json",
                                             str(out)]), timeout=60)
        refused = run_process(ulma_command(["attach", pid, "--duration", "0.3", "--no-report", "--json",
                                            str(link)]), timeout=60)
        code, _out, err = target.finish()
    assert code == 3 and "Traceback" not in err, err
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert refused.returncode == 1
    assert error_lines(refused) == [f"ulma: error: cannot write {link}: a symbolic link is in its place, "
                                    "and ulma writes through none (name the file it points to, or "
                                    "remove the link)"], refused.stderr
    assert victim.read_text() == "precious\n" and link.is_symlink()


@pytest.mark.parametrize("command", ["run", "record"])
@pytest.mark.parametrize("target", ["a symlink", "a directory", "in a missing directory"])
def test_a_json_target_that_cannot_be_written_is_refused_before_the_program_runs(
    command: str, target: str, tmp_path: Path
) -> None:
    program = tmp_path / "prog.py"
    program.write_text("open(__file__[:-len('prog.py')] + 'ran', 'w').close()\n")
    out = {"a symlink": tmp_path / "link.json", "a directory": tmp_path / "dir",
           "in a missing directory": tmp_path / "missing" / "out.json"}[target]
    if target == "a symlink":
        out.symlink_to(tmp_path / "victim")
    elif target == "a directory":
        out.mkdir()
    trace = ["-o", str(tmp_path / "t.ulma")] if command == "record" else []
    result = run_process(ulma_command([command, *trace, "--json", str(out), str(program)]), cwd=tmp_path,
                         timeout=60)
    reason = {"a symlink": "a symbolic link is in its place", "a directory": "Is a directory",
              "in a missing directory": "No such file or directory"}[target]
    assert result.returncode == 1, result.stderr
    assert error_lines(result) == result.stderr.splitlines(), result.stderr
    assert len(error_lines(result)) == 1 and error_lines(result)[0].startswith(
        f"ulma: error: cannot write {out}: {reason}"), result.stderr
    assert not (tmp_path / "ran").exists() and not (tmp_path / "victim").exists()
    assert not (tmp_path / "t.ulma").exists()
