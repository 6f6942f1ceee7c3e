"""Rows of a run that could not reach the embedded chDB because another ulma had it open (chDB
lets one process at a time): kept beside it in ``PATH.spool/RUN_ID.rows``, written second by
second as they would have been inserted, and taken in by the next ulma that opens the chDB (a run
starting or ending, or `ulma history`) once complete -- its writer wrote the end line, or died.

A file: JSON lines, the first ``{"pid": writer's pid}``, then ``["runs", row]`` and
``["functions", row]``, ``["edges", row]`` and ``["objects", row]`` lines, the last ``{"end": true}``."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from ulma.history.store import EDGE_COLUMNS, FUNCTION_COLUMNS, OBJECT_COLUMNS, RUN_COLUMNS, Row

if TYPE_CHECKING:
    from ulma.history.store import ChdbStore

COLUMNS = {"functions": FUNCTION_COLUMNS, "edges": EDGE_COLUMNS, "objects": OBJECT_COLUMNS,
           "runs": RUN_COLUMNS}


def spool_dir(path: str) -> str:
    return path.rstrip("/") + ".spool"


class Spool:
    def __init__(self, path: str, run_id: str) -> None:
        d = spool_dir(path)
        os.makedirs(d, mode=0o700, exist_ok=True)
        self.path = os.path.join(d, f"{run_id}.rows")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.file: IO[str] = os.fdopen(fd, "w")
        self._line({"pid": os.getpid()})

    def _line(self, item: object) -> None:
        self.file.write(json.dumps(item, separators=(",", ":")) + "\n")
        self.file.flush()

    def insert(self, table: str, rows: Sequence[Row]) -> None:
        if rows:
            self.file.write("".join(json.dumps([table, list(r)], separators=(",", ":")) + "\n" for r in rows))
            self.file.flush()

    def close(self) -> None:
        self._line({"end": True})
        self.file.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def take_in(store: ChdbStore, path: str) -> int:
    """Inserts the complete spooled files into `store` (just opened), removing them; rows taken."""
    d = spool_dir(path)
    try:
        names = sorted(n for n in os.listdir(d) if n.endswith(".rows"))
    except OSError:
        return 0
    taken = 0
    for name in names:
        file = os.path.join(d, name)
        try:
            with open(file) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        items = []
        for line in lines:
            try:
                items.append(json.loads(line))
            except ValueError:
                break  # a line cut short by a writer that died: what came before it stands
        head = items[0] if items and isinstance(items[0], dict) else {}
        ended = bool(items) and isinstance(items[-1], dict) and items[-1].get("end") is True
        if not ended and isinstance(head.get("pid"), int) and _alive(head["pid"]):
            continue  # still being written
        tables: dict[str, list[Row]] = {table: [] for table in COLUMNS}
        for item in items:
            if isinstance(item, list) and len(item) == 2 and item[0] in tables:
                tables[item[0]].append(item[1])
        for table, rows in tables.items():
            store.insert(table, COLUMNS[table], rows)
        taken += len(tables["functions"])
        with contextlib.suppress(OSError):
            os.unlink(file)
    return taken
