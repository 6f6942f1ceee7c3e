"""Every file ulma writes for the user (``--json``, ``-o`` traces, exports)
is made here: private to the user, and never written through a link.

A new file is created under a temporary name in the target's directory,
exclusively (``O_EXCL | O_NOFOLLOW``) and with mode 0600, so neither a file
planted there nor the umask decides who may read it, and then renamed over
the target: a rename replaces whatever has the target's name (a file, a
symbolic link) without touching what that pointed to.  A trace is renamed at
once, so a run cut short leaves it readable under its name; a report or an
export when it is complete, so a failed one leaves the target as it was.

What is at the target decides:

- nothing, or a regular file: it gets (is replaced by) the new file;
- a symbolic link to a file: refused, in one line.  Writing through it is
  what an attacker who planted it wants, and replacing it would silently undo
  a link the user made on purpose; the user can name the file it points to;
- a symbolic link to a pipe, terminal or device that is the user's own or
  root's (``/dev/stdout``, ``/dev/fd/N`` from ``>(cmd)``, ``/dev/null``):
  written through, in place.  A FIFO another user made is refused (what is
  written there would be theirs to read);
- a directory: refused;
- a FIFO, a terminal, /dev/null (anything not a regular file, named
  directly): written in place, as a shell's ``>`` would, opened without
  following a link and without creating anything.

The look at the target is only there to refuse in one line: the safety is
the rename, so a link planted after the look is replaced, not followed (and
O_NOFOLLOW guards the in-place case).  Writing to standard output (``-``,
exports) does not come here.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

TYPE_CHECKING = False  # typing is for the type checker only: `ulma run` does not import it
if TYPE_CHECKING:
    from typing import Any, BinaryIO, TextIO

MODE = 0o600
_TEMP_TRIES = 100
LINK_REFUSED = ("a symbolic link is in its place, and ulma writes through none "
                "(name the file it points to, or remove the link)")


class NewFile:
    """An output being written through ``fd``; ``close()`` puts it at
    ``path`` (if it is not there yet), ``discard()`` drops it."""

    def __init__(self, path: str, *, at_once: bool = False) -> None:
        self.path = path
        self._temp: str | None = None  # the name it has until it is renamed
        self.in_place = False  # a FIFO, terminal or device, written as it is
        st = _in_place(path)
        if st is not None and not stat.S_ISREG(st.st_mode):
            self.fd = _open_in_place(path, follow=_is_link(path))
            self.in_place = True
            return
        self._temp, self.fd = _create_beside(path)
        if at_once:
            self._publish()

    def _publish(self) -> None:
        if self._temp is None:
            return
        try:
            os.replace(self._temp, self.path)
        except OSError:
            self.discard()
            raise
        self._temp = None

    def close(self) -> None:
        """Done: the file is at its path."""
        try:
            self._publish()
        finally:
            self._close_fd()

    def discard(self) -> None:
        """Failed: the new file goes (a trace renamed at once stays, as far as it got)."""
        self._close_fd()
        if self._temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temp)
            self._temp = None

    def _close_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _in_place(path: str) -> os.stat_result | None:
    """What has the name `path` (None: nothing); a link or a directory is refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(path)
        except OSError:
            raise OSError(errno.ELOOP, LINK_REFUSED, path) from None
        if not _device_of_ours(st):
            raise OSError(errno.ELOOP, LINK_REFUSED, path)
    if stat.S_ISDIR(st.st_mode):
        raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    return st


def _is_link(path: str) -> bool:
    return stat.S_ISLNK(os.lstat(path).st_mode)


def _device_of_ours(st: os.stat_result) -> bool:
    """A pipe, terminal, socket or device (not a file, not a directory) owned
    by the user or by root: safe to write to through a link."""
    mode = st.st_mode
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) and st.st_uid in (os.getuid(), 0)


def check(path: str) -> None:
    """Raises the OSError that writing `path` would meet now (a link or a
    directory in its place, a directory missing or not ours to write in),
    so that a command can refuse before it runs a program for minutes."""
    st = _in_place(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        return  # written in place
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)


def _create_beside(path: str) -> tuple[str, int]:
    """A new file, ours and 0600, under an unused name in path's directory."""
    directory, base = os.path.split(path)
    # short enough that the name stays within NAME_MAX whatever the target's length
    prefix = os.path.join(directory, f".{base[:32]}.")
    for _ in range(_TEMP_TRIES):
        temp = f"{prefix}{os.urandom(6).hex()}.ulma-tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, MODE)
        except FileExistsError:
            continue
        except OSError as exc:  # the directory's fault, reported as the target's
            raise OSError(exc.errno, exc.strerror, path) from None
        return temp, fd
    raise OSError(errno.EEXIST, "no unused temporary name beside it", path)


def _open_in_place(path: str, *, follow: bool = False) -> int:
    """A FIFO, terminal or device: opened as it is.  Named directly, a link
    put there since it was looked at is refused by O_NOFOLLOW; through a
    link, what was opened is checked again to be a device of ours."""
    flags = os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, LINK_REFUSED, path) from None
        raise
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) or (follow and not _device_of_ours(st)):  # changed meanwhile
        os.close(fd)
        raise OSError(errno.EBUSY, "it changed while being opened", path)
    return fd


RESERVE_BYTES = 64 << 20  # a new file's blocks are allocated this far ahead of its writes


class _Reserving(io.FileIO):
    """A new regular file that has the filesystem allocate its blocks ahead of the writes,
    RESERVE_BYTES at a time (``_core.reserve``): writing into allocated blocks skips the
    allocation step (on ext4 a quarter of the kernel's time for a large export).  The file
    grows ahead; ``close`` cuts it back to the end of what was written.  Where blocks cannot
    be allocated (the filesystem, no room) it writes as a plain file does."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd, "wb", closefd=False)
        self.end = 0  # the end of what was written
        self.reserved = 0  # the file's size once reserved; -1: reserving failed
        self.written_ahead = False  # the size was ever grown past `end`

    def write(self, data: Any) -> int:
        n = super().write(data)
        self.end = max(self.end, self.tell())
        if 0 <= self.reserved < self.end + (1 << 20):
            from ulma import _core

            want = self.end + RESERVE_BYTES
            if _core.reserve(self.fileno(), want):
                self.reserved, self.written_ahead = want, True
            else:
                self.reserved = -1
        return n

    def close(self) -> None:
        if not self.closed and self.written_ahead:
            os.ftruncate(self.fileno(), self.end)
        super().close()


@contextmanager
def writing(path: str) -> Iterator[BinaryIO]:
    """The file to write in place of `path`; it is there, whole, only if
    the block ends without an error."""
    new = NewFile(path)
    try:
        raw = _Reserving(new.fd) if new.in_place is False else io.FileIO(new.fd, "wb", closefd=False)
        with raw, io.BufferedWriter(raw) as f:
            yield f
    except BaseException:
        new.discard()
        raise
    new.close()


@contextmanager
def writing_text(path: str) -> Iterator[TextIO]:
    """As `writing`, in UTF-8 text."""
    with writing(path) as raw, io.TextIOWrapper(raw, encoding="utf-8") as f:
        yield f
