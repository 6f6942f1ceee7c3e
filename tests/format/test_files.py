"""ulma.format.files, the one way ulma makes a file for the user: what happens to what is in the
target's place (the command-line behaviour is in tests/integration/test_output_files.py)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from ulma import _core
from ulma.format import files


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError), files.writing(str(out)) as f:
        f.write(b"half of it")
        raise RuntimeError("the export failed")
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_trace_is_in_place_while_it_is_written(tmp_path: Path) -> None:
    out = tmp_path / "t.ulma"
    new = files.NewFile(str(out), at_once=True)
    os.write(new.fd, b"first chunk")
    assert out.read_bytes() == b"first chunk" and stat.S_IMODE(out.stat().st_mode) == 0o600
    new.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.ulma"]


def test_a_fifo_named_directly_is_written_in_place(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    with files.writing(str(fifo)) as f:
        f.write(b"through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"] and stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_link_to_a_pipe_of_ours_is_written_through(tmp_path: Path) -> None:
    """/dev/stdout, /dev/fd/N from a shell's >(cmd): links to the user's own pipe or terminal."""
    read_end, write_end = os.pipe()
    link = tmp_path / "link"
    link.symlink_to(f"/proc/self/fd/{write_end}")
    with files.writing(str(link)) as f:
        f.write(b"through the link")
    os.close(write_end)
    assert os.read(read_end, 100) == b"through the link" and link.is_symlink()
    os.close(read_end)


def test_a_link_to_a_fifo_another_user_owns_is_refused(tmp_path: Path) -> None:
    """What is written into someone else's FIFO is theirs to read."""
    if os.getuid() != 0:
        pytest.skip("needs root to make a FIFO owned by another user")
    fifo, link = tmp_path / "fifo", tmp_path / "link"
    os.mkfifo(fifo)
    os.chown(fifo, 65534, 65534)
    link.symlink_to(fifo)
    with pytest.raises(OSError, match="symbolic link"):
        files.NewFile(str(link))


def test_a_link_planted_while_the_file_is_written_is_replaced_not_followed(tmp_path: Path) -> None:
    out, victim = tmp_path / "out", tmp_path / "victim"
    victim.write_bytes(b"precious")
    new = files.NewFile(str(out))  # nothing in its place yet
    out.symlink_to(victim)  # planted between the look and the rename
    os.write(new.fd, b"report")
    new.close()
    assert victim.read_bytes() == b"precious"
    assert not out.is_symlink() and out.read_bytes() == b"report"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_a_new_file_has_its_blocks_reserved_ahead_and_ends_where_the_writes_end(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    with probe.open("wb") as f:
        if not _core.reserve(f.fileno(), 1 << 20):
            pytest.skip(f"the filesystem of {tmp_path} cannot allocate blocks ahead (fallocate)")
    out = tmp_path / "out"
    piece = bytes(range(256)) * 4096  # 1 MiB
    with files.writing(str(out)) as f:
        for _ in range(3):
            f.write(piece)
        f.flush()
        (temp,) = (p for p in tmp_path.iterdir() if p.name.endswith(".ulma-tmp"))
        # blocks allocated well past what was written (the file grows ahead, reading zeros there)
        assert temp.stat().st_blocks * 512 >= files.RESERVE_BYTES
        f.write(b"tail")
    assert out.read_bytes() == piece * 3 + b"tail"
    # nothing reserved is left: the size is the data's, and so are the blocks (within a block)
    assert out.stat().st_blocks * 512 < len(piece) * 3 + 2 * 4096 + 4096


def test_reserving_a_pipe_fails_and_changes_nothing() -> None:
    read, write = os.pipe()
    try:
        assert not _core.reserve(write, 1 << 20)
        assert not _core.reserve(write, 0)
    finally:
        os.close(read)
        os.close(write)
