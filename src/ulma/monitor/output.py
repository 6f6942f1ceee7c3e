"""The program's stdout and stderr, kept aside while a view owns the terminal.

Each goes to an unnamed temporary file (never a pipe: the program must never
block on a reader that is busy drawing).  The program's descriptors share the
file offset with ours, so we read with ``pread`` only and never move it."""

from __future__ import annotations

import os
import tempfile
from typing import IO, BinaryIO

CHUNK = 1 << 16


class Stream:
    """One captured stream with two independent read positions: one for a
    pane that shows it live, one for passing it through afterwards."""

    def __init__(self) -> None:
        # Lives as long as the run, closed by close().
        self.file: IO[bytes] = tempfile.TemporaryFile(prefix="ulma-output-")  # noqa: SIM115
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

    def close(self) -> None:
        self.file.close()


class Captured:
    def __init__(self) -> None:
        self.stdout = Stream()
        self.stderr = Stream()
        self.broken = False

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

    def close(self) -> None:
        self.stdout.close()
        self.stderr.close()
