"""Errors the user can act on: printed as one line, never as a traceback."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class UsageError(Exception):
    """Bad input from the user; the message is the whole story."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line ('ulma: error: ...')."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"ulma: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def parse_size(text: str) -> int:
    """'8M', '512K', '1G' or a byte count."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    try:
        value = int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 8M or 512K)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return value
