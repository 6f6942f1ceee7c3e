"""Where the history is: ``--history`` and ``--dsn`` values.

- nothing (or ``chdb:``): the embedded chDB under ``$XDG_DATA_HOME/ulma/history`` (else
  ``~/.local/share/ulma/history``), made 0700;
- ``chdb:PATH``: the embedded chDB in the directory PATH;
- ``clickhouse://[USER[:PASSWORD]@]HOST[:PORT][/DB][?cluster=NAME]``: a ClickHouse server
  (native protocol, default port 9000, database ``ulma``); with ``cluster`` the tables are made on
  every shard the server's ``remote_servers`` names for NAME, under a ``Distributed`` table.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from ulma.history import HistoryError

DEFAULT_PORT = 9000
DEFAULT_DB = "ulma"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Dsn:
    kind: str  # "chdb" or "server"
    path: str = ""  # chdb: its directory
    host: str = ""
    port: int = DEFAULT_PORT
    db: str = DEFAULT_DB
    user: str = "default"
    password: str = ""
    cluster: str | None = None

    def where(self) -> str:
        """As the user may be told it (no password)."""
        if self.kind == "chdb":
            return f"chDB {self.path}"
        cluster = f"?cluster={self.cluster}" if self.cluster else ""
        return f"clickhouse://{self.host}:{self.port}/{self.db}{cluster}"


def default_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "ulma", "history")


def looks_like(text: str) -> bool:
    """A token after a bare --history that is its DSN rather than the program."""
    return "://" in text or text.startswith("chdb:")


def parse(text: str | None) -> Dsn:
    """HistoryError, one line, for what is not a DSN."""
    if not text or text == "chdb:":
        return Dsn("chdb", path=default_dir())
    if text.startswith("chdb:"):
        path = text[len("chdb:"):]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise HistoryError(f"malformed history DSN {text!r}: chdb:PATH needs a directory")
        return Dsn("chdb", path=os.path.abspath(os.path.expanduser(path)))
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise HistoryError(f"malformed history DSN {text!r}: {exc}") from None
    if parts.scheme != "clickhouse":
        raise HistoryError(f"malformed history DSN {text!r}: give clickhouse://HOST[:PORT][/DB]"
                           "[?cluster=NAME] or chdb:PATH")
    if not parts.hostname:
        raise HistoryError(f"malformed history DSN {text!r}: no host")
    db = parts.path.strip("/") or DEFAULT_DB
    if not _NAME.match(db):
        raise HistoryError(f"malformed history DSN {text!r}: {db!r} is not a database name")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise HistoryError(f"malformed history DSN {text!r}: bad query {parts.query!r}") from None
    unknown = set(query) - {"cluster"}
    if unknown:
        raise HistoryError(f"malformed history DSN {text!r}: unknown parameter {sorted(unknown)[0]!r} "
                           "(only cluster=NAME)")
    cluster = query["cluster"][-1] if "cluster" in query else None
    if cluster is not None and not _NAME.match(cluster):
        raise HistoryError(f"malformed history DSN {text!r}: {cluster!r} is not a cluster name")
    return Dsn("server", host=parts.hostname, port=port or DEFAULT_PORT, db=db,
               user=unquote(parts.username) if parts.username else "default",
               password=unquote(parts.password) if parts.password else "", cluster=cluster)
