"""Fleet history: per-second, per-function figures of every run, kept in ClickHouse.

``ulma run --history [DSN]`` (and ``ulma attach``) writes one row per function per second while
the program runs (ulma.history.writer: the differences between the monitor's live snapshots, one a
second, and the final totals at the end, so that a run's rows add up to its report exactly);
``ulma history`` reads them (ulma.history.queries).

Where (ulma.history.dsn): no DSN is the embedded chDB (ClickHouse in this process, PyPI ``chdb``)
under ``$XDG_DATA_HOME/ulma/history``; ``clickhouse://host:port/db`` a server, with
``?cluster=NAME`` a cluster of them (a ``Distributed`` table over a local table on each shard).
The same schema and SQL serve both (ulma.history.store), kept to what ClickHouse 18.16 (Debian's
``clickhouse-server``) takes as well as current ClickHouse.
"""

from __future__ import annotations

INSTALL = "pip install 'ulma[history]'"


class HistoryError(Exception):
    """The history cannot be read or written: one line for the user."""


def first_line(exc: BaseException) -> str:
    """An exception from ClickHouse or its client as one line (their messages run to stack traces)."""
    text = str(exc).strip() or type(exc).__name__
    for line in text.splitlines():
        line = line.strip()
        if (line and not line.startswith("Code:")) or (line.startswith("Code:") and len(line) > 12):
            text = line
            break
    text = text.replace("DB::Exception: ", "").split(" Stack trace")[0].split(", Stack trace")[0]
    return text if len(text) <= 300 else text[:297] + "..."
