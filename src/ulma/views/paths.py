"""Source paths as people read them: short, and shorter again when room is tight.

A profile names every function's file by its absolute path.  Shown whole, the
paths of the standard library and of installed packages push the names and
the numbers off the line (a 120-column report wrapped every row onto three
lines).  Every view shows a file relative to where it lives instead:

- under the working directory: relative to it (``app/models.py``);
- in an installed package: from the package (``requests/sessions.py``);
- in the standard library: ``<stdlib>/json/decoder.py``;
- anywhere else: as it is.

Folders are found from this interpreter (``sysconfig``), which is the one
``ulma run`` starts the program with, and, for a program of another Python
(``ulma attach``), from the shape of the path (``.../lib/python3.X/...``,
``.../site-packages/...``).  `elide` then drops leading folders to fit a width:
the file's own name and line are the last to go."""

from __future__ import annotations

import os
import re
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len

STDLIB = "<stdlib>"
ELLIPSIS = "…"

# a Python's own folders, seen in a path of any interpreter
_PACKAGES = re.compile(r"/(?:site|dist)-packages/")
_STDLIB = re.compile(r"/lib(?:64)?/python3\.\d+t?/")


@dataclass(frozen=True, slots=True)
class Root:
    """A folder whose files are named relative to it, behind `label` (or
    nothing: the label is then left out, no slash)."""

    folder: str
    label: str = ""


def roots(cwd: str) -> tuple[Root, ...]:
    """The folders files are shown relative to, most specific (longest)
    first: site-packages can lie inside the standard library's folder, and
    a project's virtual environment inside the working directory."""
    paths = sysconfig.get_paths()
    found: dict[str, str] = {}
    for key in ("stdlib", "platstdlib"):
        if paths.get(key):
            found[paths[key]] = STDLIB
    if cwd and cwd != os.sep:
        found[cwd] = ""
    for key in ("purelib", "platlib"):
        if paths.get(key):
            found[paths[key]] = ""
    return tuple(Root(folder, label) for folder, label in
                 sorted(found.items(), key=lambda item: len(item[0]), reverse=True))


def _join(label: str, rest: str) -> str:
    return f"{label}/{rest}" if label else rest


def short(path: str, where: Sequence[Root]) -> str:
    """`path` relative to the folder that holds it most closely: one of
    `where`, an installed package's folder or a standard library, by their
    shape (a virtual environment inside the working directory names its
    files from the package).  Else unchanged, as are names that are not
    paths (``<frozen abc>``, ``<string>``)."""
    if not path.startswith(os.sep):
        return path
    found: list[tuple[int, str]] = []  # (characters of `path` to drop, label)
    for root in where:
        folder = root.folder.rstrip(os.sep) + os.sep
        if path.startswith(folder):
            found.append((len(folder), root.label))
            break
    packages = [m.end() for m in _PACKAGES.finditer(path)]
    if packages:
        found.append((packages[-1], ""))
    stdlib = _STDLIB.search(path)
    if stdlib is not None:
        found.append((stdlib.end(), STDLIB))
    if not found:
        return path
    end, label = max(found, key=lambda item: item[0])
    return _join(label, path[end:])


def location(path: str, line: int, where: Sequence[Root]) -> str:
    """``short(path):line``."""
    return f"{short(path, where)}:{line}"


def elide(text: str, width: int) -> str:
    """A short path (with its ``:line``) in at most `width` cells: whole if it
    fits, else its leading folders given up one by one for ``…/``
    (``…/json/decoder.py:343``, then ``…/decoder.py:343``), then the file
    name alone, and only then cut at the end (with ``…``)."""
    if width <= 0:
        return ""
    if cell_len(text) <= width:
        return text
    parts = text.split("/")
    for first in range(1, len(parts)):
        candidate = ELLIPSIS + "/" + "/".join(parts[first:])
        if cell_len(candidate) <= width:
            return candidate
    name = parts[-1]
    if cell_len(name) <= width:
        return name
    out = ""
    for ch in name:
        if cell_len(out + ch) > width - 1:
            break
        out += ch
    return out + ELLIPSIS
