"""Where the program's output is kept while a view owns the terminal: named files in a private
directory, a lock that tells a live run from one left over, and nothing followed or shared."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from ulma.monitor.output import Captured, leftovers, report_leftovers


def private(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True)
    return path


def test_the_output_is_in_private_named_files_that_are_removed_once_passed_through(tmp_path: Path) -> None:
    root = tmp_path / "output"
    captured = Captured("ulma run prog.py", root=str(root))
    assert captured.warning is None and captured.path is not None
    run = Path(captured.path)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700 and stat.S_IMODE(run.stat().st_mode) == 0o700
    for name in ("stdout", "stderr", "command"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o600
    os.write(captured.stdout.file.fileno(), b"out\n")
    os.write(captured.stderr.file.fileno(), b"err\n")
    out, err = io.BytesIO(), io.BytesIO()
    captured.pass_through(out, err)
    assert (out.getvalue(), err.getvalue()) == (b"out\n", b"err\n")
    assert captured.close() is None
    assert list(root.iterdir()) == []


def test_output_not_shown_is_kept_and_named_only_once_its_monitor_let_go(tmp_path: Path) -> None:
    root = tmp_path / "output"
    captured = Captured("ulma run prog.py 3", root=str(root))
    os.write(captured.stdout.file.fileno(), b"never shown\n")
    assert list(leftovers(str(root))) == []  # its monitor holds it
    kept = captured.close(keep=True)
    assert kept is not None and kept == captured.path
    assert list(leftovers(str(root))) == [(kept, "ulma run prog.py 3")]
    err = io.StringIO()
    report_leftovers(err, str(root))
    assert err.getvalue().count("\n") == 1 and f"{kept} (stdout, stderr)" in err.getvalue()
    assert Path(kept, "stdout").read_bytes() == b"never shown\n"


def test_a_run_that_wrote_nothing_leaves_nothing_even_when_kept(tmp_path: Path) -> None:
    root = tmp_path / "output"
    assert Captured("x", root=str(root)).close(keep=True) is None
    assert list(root.iterdir()) == []


def test_a_planted_symlink_is_not_followed_and_the_run_goes_on_with_unnamed_files(tmp_path: Path) -> None:
    elsewhere = private(tmp_path / "elsewhere")
    root = tmp_path / "output"
    root.symlink_to(elsewhere)
    captured = Captured("x", root=str(root))
    assert captured.path is None and captured.warning and str(root) in captured.warning
    os.write(captured.stdout.file.fileno(), b"kept aside\n")
    out = io.BytesIO()
    captured.pass_through(out, io.BytesIO())
    assert out.getvalue() == b"kept aside\n"
    captured.close(keep=True)
    assert list(elsewhere.iterdir()) == []
    assert list(leftovers(str(root))) == []


def test_a_directory_open_to_others_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "output"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    captured = Captured("x", root=str(root))
    assert captured.path is None and captured.warning is not None
    captured.close()
    assert list(root.iterdir()) == []
