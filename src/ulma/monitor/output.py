"""The program's stdout and stderr, kept aside while a view owns the terminal.

Each goes to a file (never a pipe: the program must never block on a reader
that is busy drawing).  The program's descriptors share the file offset with
ours, so we read with ``pread`` only and never move it.

The files are named, in a directory of their own per run under a private
(0700) directory, so that the output outlives a monitor that is killed (even
by SIGKILL) or that lost its terminal: the next ``ulma`` names what is left
(``leftovers``).  Once the output was passed through, its files are removed.
A run's directory is locked (``flock``) by its monitor while it lives: one
that nobody holds is left over."""

from __future__ import annotations

import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator

TYPE_CHECKING = False  # typing is for the type checker only: `ulma run` does not import it
if TYPE_CHECKING:
    from typing import IO, BinaryIO

CHUNK = 1 << 16
STREAMS = ("stdout", "stderr")
COMMAND = "command"  # what ran, one line, for the report of a leftover
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def output_root() -> str:
    """Where runs keep their output: $XDG_STATE_HOME (~/.local/state)/ulma/output,
    the user's own (unlike /tmp, where another user could plant the name
    first), and kept across a reboot, like any log."""
    state = os.environ.get("XDG_STATE_HOME")
    if not (state and os.path.isabs(state)):
        state = os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "ulma", "output")


def _open_private_dir(path: str, create: bool) -> int:
    """A descriptor on `path`, a directory of ours that only we can use
    (created 0700, parents too, if `create`); OSError if it is not one (a
    symlink, another user's, open to others)."""
    if create:
        os.makedirs(path, mode=0o700, exist_ok=True)
    fd = os.open(path, _DIR_FLAGS)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
            raise PermissionError(f"{path} is not a private directory of this user")
        return fd
    except BaseException:
        os.close(fd)
        raise


class Stream:
    """One captured stream with two independent read positions: one for a
    pane that shows it live, one for passing it through afterwards."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self._shown = 0
        self._passed = 0

    def _read(self, start: int, limit: int) -> bytes:
        return os.pread(self.file.fileno(), limit, start)

    def new_for_pane(self, limit: int = CHUNK) -> bytes:
        """What arrived since the last call (at most `limit` bytes: the rest
        comes on the next calls)."""
        data = self._read(self._shown, limit)
        self._shown += len(data)
        return data

    def pass_through(self, out: BinaryIO) -> None:
        """Copies everything not yet passed through to `out`."""
        while data := self._read(self._passed, CHUNK):
            out.write(data)
            self._passed += len(data)
        out.flush()

    def all_passed(self) -> bool:
        return os.fstat(self.file.fileno()).st_size <= self._passed

    def close(self) -> None:
        self.file.close()


class Captured:
    """The program's two streams, in named files under `root` (default:
    ``output_root()``).  `command` says what ran, for a later ``ulma`` that
    finds them left over.  If no private directory can be had, the files are
    unnamed (lost with a killed monitor) and ``warning`` says why."""

    def __init__(self, command: str = "", root: str | None = None) -> None:
        self.broken = False
        self.path: str | None = None  # the run's directory, while its files are named
        self.warning: str | None = None
        self._dir_fd = -1
        root = root or output_root()
        try:
            self._make_dir(root)
        except OSError as exc:
            self.warning = (f"cannot keep the program's output in {root} ({exc.strerror or exc}): "
                            "it is kept in unnamed files that a killed ulma loses")
        files: list[IO[bytes]] = []
        for name in STREAMS:
            if self._dir_fd >= 0:
                fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=self._dir_fd)
                files.append(os.fdopen(fd, "w+b"))
            else:
                import tempfile

                files.append(tempfile.TemporaryFile(prefix="ulma-output-"))  # noqa: SIM115 -- closed in close()
        self.stdout, self.stderr = (Stream(f) for f in files)
        if self._dir_fd >= 0:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(COMMAND, flags, 0o600, dir_fd=self._dir_fd)
            with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
                f.write(" ".join(command.split()) + "\n")

    def _make_dir(self, root: str) -> None:
        root_fd = _open_private_dir(root, create=True)
        try:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            name = f"{stamp}-{os.getpid()}"
            os.mkdir(name, 0o700, dir_fd=root_fd)
            self._dir_fd = os.open(name, _DIR_FLAGS, dir_fd=root_fd)
            fcntl.flock(self._dir_fd, fcntl.LOCK_EX)  # ours while we live (not the program's)
            self.path = os.path.join(root, name)
        finally:
            os.close(root_fd)

    def pass_through(self, out: BinaryIO, err: BinaryIO) -> None:
        """Copies what is new of each stream to `out` and `err`.  If they are
        closed (a pipe whose reader left), the rest is dropped, as the
        program's writes would have failed without ulma: the run goes on."""
        if self.broken:
            return
        try:
            self.stdout.pass_through(out)
            self.stderr.pass_through(err)
        except OSError:
            self.broken = True

    def close(self, keep: bool = False) -> str | None:
        """Closes the files; they are removed unless `keep` (nothing to show
        could be shown: the terminal went away) and one of them has something.
        Returns the directory kept, if any."""
        kept = keep and self.path is not None and not (
            self.stdout.all_passed() and self.stderr.all_passed())
        self.stdout.close()
        self.stderr.close()
        if self._dir_fd >= 0:
            if not kept:
                for name in (*STREAMS, COMMAND):
                    _quietly(os.unlink, name, dir_fd=self._dir_fd, ignore=FileNotFoundError)
                assert self.path is not None
                _quietly(os.rmdir, self.path)
            os.close(self._dir_fd)  # the lock goes with it
            self._dir_fd = -1
        return self.path if kept else None


def _quietly(remove: Callable[..., None], path: str, *, dir_fd: int | None = None,
             ignore: type[OSError] = OSError) -> None:
    """remove(path) whose failure does not matter (contextlib.suppress, which
    `ulma run` would import for this only, on its way to the program)."""
    try:
        remove(path, dir_fd=dir_fd)
    except ignore:
        return


def leftovers(root: str | None = None) -> Iterator[tuple[str, str]]:
    """(directory, command) of each run whose output was never shown and
    whose monitor is gone (nobody holds its lock).  Runs that left nothing
    (both streams empty) are removed on the way."""
    root = root or output_root()
    try:
        root_fd = _open_private_dir(root, create=False)
    except OSError:
        return
    try:
        names = sorted(os.listdir(root_fd))
        for name in names:
            found = _leftover(root_fd, name)
            if found is not None:
                yield os.path.join(root, name), found
    finally:
        os.close(root_fd)


def _leftover(root_fd: int, name: str) -> str | None:
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=root_fd)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # its monitor still runs
        sizes = []
        for stream in STREAMS:
            try:
                sizes.append(os.stat(stream, dir_fd=fd, follow_symlinks=False).st_size)
            except FileNotFoundError:
                sizes.append(0)
        if not any(sizes):
            for left in (*STREAMS, COMMAND):
                _quietly(os.unlink, left, dir_fd=fd)
            _quietly(os.rmdir, name, dir_fd=root_fd)
            return None
        try:
            cfd = os.open(COMMAND, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            with os.fdopen(cfd, "rb") as f:
                text = f.read(4096).decode("utf-8", "replace").strip()
            return "".join(c if c.isprintable() else "?" for c in text)  # no escapes to the terminal
        except OSError:
            return ""
    finally:
        os.close(fd)


def report_leftovers(err: IO[str], root: str | None = None) -> None:
    """One line per run whose output was kept because it could not be shown."""
    for path, command in leftovers(root):
        what = f" of `{command}`" if command else ""
        err.write(f"ulma: the output{what} was never shown (its ulma ended first); it is kept in "
                  f"{path} (stdout, stderr): remove it when read\n")
