"""Errors the user can act on: printed as one line, never as a traceback."""

from __future__ import annotations

import argparse
import os
import sys

TYPE_CHECKING = False  # typing is not imported on `ulma run`'s way to the program
if TYPE_CHECKING:
    from typing import Any, NoReturn


class UsageError(Exception):
    """Bad input from the user; the message is the whole story."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size() tells it (COLUMNS,
    else stdout's terminal, else 80), without importing shutil (and with it
    bz2 and lzma) on every start: argparse makes a help formatter for each
    option it is given."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _columns() - 2 if width is None else width)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line ('ulma: error: ...')."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def parse(self, argv: list[str]) -> argparse.Namespace:
        """parse_args, then every numeric option checked against its range
        (bounds.py): one line and exit code 2 outside it."""
        from ulma.cli import bounds

        opts = self.parse_args(argv)
        bounds.check(opts)
        return opts

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"ulma: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def parse_size(text: str) -> int:
    """'8M', '512K', '1G' or a byte count."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    try:
        value = int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except (ValueError, OverflowError):  # OverflowError: 'infK', '1e999M'
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 8M or 512K)") from None
    return value  # its range is checked with the other options' (bounds.py)
