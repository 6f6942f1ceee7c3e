"""The history's tables, on chDB or a ClickHouse server (or cluster), through one small interface.

Schema (the same on both; SQL that ClickHouse 18.16 takes as well as current ClickHouse: no
CODEC, no LowCardinality, no Nullable, times as DateTime seconds and read back as Unix seconds):

``functions``: one row per (process, second, function) in which the function did anything --
``ts`` (the second, UTC), ``host``, ``pid``, ``run_id``, ``name``, ``file``, ``line``, ``calls``
and the times in ns of that second: ``total_ns``, ``self_ns``, the four-way split of the total
(``cpu_ns``, ``overhead_ns``, ``wait_ns``, ``unmeasured_ns``) and the split of self time
(``self_cpu_ns``, ``self_wait_ns``, ``self_overhead_ns``).  Signed: a second's figure is the
difference of two live snapshots.  MergeTree, a partition per day (toYYYYMMDD(ts)), ordered by
(toStartOfHour(ts), name, file, line, ts): a time range reads only its hours and days ("top N over
the last hour"), and within each hour one function's rows lie together ("one function's trend").

``edges``: one row per (process, second, caller and callee) with calls between them that second
-- ``caller_name``, ``caller_file``, ``caller_line``, the callee's ``name``, ``file``, ``line``,
``calls`` and ``total_ns`` (the callee's time when called from there); ordered as ``functions``, by
the callee.

``objects`` (runs with ``--objects``): one row per (process, second, type) whose counts moved that
second -- ``type_name`` (module.qualname), ``created``, ``freed`` (of those made while traced),
``freed_untracked`` (made before tracing) and ``bytes`` (the change of the type's live bytes, 0
where the mechanism tells no size); ordered by (hour, type, second).

``runs``: one row per run -- ``run_id``, ``host``, ``pid``, ``command``, ``started``.

On a cluster each shard holds ``functions_local``, ``edges_local``, ``objects_local`` and
``runs_local``, and every shard a ``Distributed`` table of the plain name over them (rows spread at
random): reads and writes name the plain tables everywhere.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from ulma.history import INSTALL, HistoryError, first_line
from ulma.history.dsn import Dsn

FIGURES = ("calls", "total_ns", "self_ns", "cpu_ns", "overhead_ns", "wait_ns", "unmeasured_ns",
           "self_cpu_ns", "self_wait_ns", "self_overhead_ns")
FUNCTION_COLUMNS = ("ts", "host", "pid", "run_id", "name", "file", "line", *FIGURES)
RUN_COLUMNS = ("run_id", "host", "pid", "command", "started")
EDGE_COLUMNS = ("ts", "host", "pid", "run_id", "caller_name", "caller_file", "caller_line", "name", "file",
                "line", "calls", "total_ns")
OBJECT_COLUMNS = ("ts", "host", "pid", "run_id", "type_name", "created", "freed", "freed_untracked", "bytes")

_FUNCTIONS = """CREATE TABLE IF NOT EXISTS {db}.{table} (
    ts DateTime, host String, pid UInt32, run_id String, name String, file String, line UInt32,
    {figures}
) ENGINE = MergeTree() PARTITION BY toYYYYMMDD(ts) ORDER BY (toStartOfHour(ts), name, file, line, ts)"""
_EDGES = """CREATE TABLE IF NOT EXISTS {db}.{table} (
    ts DateTime, host String, pid UInt32, run_id String,
    caller_name String, caller_file String, caller_line UInt32, name String, file String, line UInt32,
    calls Int64, total_ns Int64
) ENGINE = MergeTree() PARTITION BY toYYYYMMDD(ts) ORDER BY (toStartOfHour(ts), name, file, line, ts)"""
_OBJECTS = """CREATE TABLE IF NOT EXISTS {db}.{table} (
    ts DateTime, host String, pid UInt32, run_id String, type_name String,
    created Int64, freed Int64, freed_untracked Int64, bytes Int64
) ENGINE = MergeTree() PARTITION BY toYYYYMMDD(ts) ORDER BY (toStartOfHour(ts), type_name, ts)"""
_RUNS = """CREATE TABLE IF NOT EXISTS {db}.{table} (
    run_id String, host String, pid UInt32, command String, started DateTime
) ENGINE = MergeTree() PARTITION BY toYYYYMM(started) ORDER BY (started, run_id)"""


TABLES = ("functions", "edges", "objects", "runs")


def ddl(db: str, suffix: str = "") -> list[str]:
    """The database and TABLES (each name + `suffix`: "_local" on a cluster's shards)."""
    figures = ", ".join(f"{name} Int64" for name in FIGURES)
    return [f"CREATE DATABASE IF NOT EXISTS {db}",
            _FUNCTIONS.format(db=db, table="functions" + suffix, figures=figures),
            _EDGES.format(db=db, table="edges" + suffix),
            _OBJECTS.format(db=db, table="objects" + suffix),
            _RUNS.format(db=db, table="runs" + suffix)]


Value = int | str
Row = Sequence[Value]


def literal(value: Value) -> str:
    """A value as a ClickHouse SQL literal."""
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Store(Protocol):
    dsn: Dsn

    def query(self, sql: str) -> list[tuple[Any, ...]]: ...
    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None: ...
    def close(self) -> None: ...


def missing(what: str) -> str:
    return f"{what}: {INSTALL}"


def open_store(dsn: Dsn, *, create: bool) -> Store:
    """The history at `dsn`, its tables made first if `create` (writers) -- HistoryError if the
    client library is missing (say so before anything runs: `check_client`) or the store cannot
    be reached."""
    store: Store = ChdbStore(dsn, create=create) if dsn.kind == "chdb" else ServerStore(dsn)
    if not create:
        try:
            found = store.query(f"EXISTS TABLE {dsn.db}.functions")
        except HistoryError as exc:
            if "exist" not in str(exc):  # the server cannot be reached, or says something else
                store.close()
                raise
            found = [(0,)]
        if not found or not int(found[0][0]):
            store.close()
            raise HistoryError(f"no history in {dsn.where()} yet (`ulma run --history` writes it)")
    if create:
        try:
            if isinstance(store, ServerStore):
                store.create()
            else:
                for sql in ddl(dsn.db):
                    store.query(sql)
        except BaseException:
            store.close()
            raise
    return store


def check_client(dsn: Dsn) -> None:
    """HistoryError naming what to install when the client library for `dsn` is missing."""
    name, what = ("chdb", "needs chDB") if dsn.kind == "chdb" else ("clickhouse_driver",
                                                                   f"{dsn.where()} needs clickhouse-driver")
    if importlib.util.find_spec(name) is None:
        raise HistoryError(missing(what))


class HistoryBusy(HistoryError):
    """The embedded chDB's directory is open in another process (one at a time: ClickHouse's
    lock on its status file)."""


def chdb_holder(path: str) -> int | None:
    """The pid of the process that has the chDB in `path` open, or None if none has.  Asked
    before opening it: chDB would say it on stderr itself, in lines of its own."""
    import fcntl

    try:
        fd = os.open(os.path.join(path, "status"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 200).decode(errors="replace")
            first = text.split("\n", 1)[0]
            return int(first[4:]) if first.startswith("PID:") and first[4:].strip().isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class ChdbStore:
    """The embedded chDB: ClickHouse in this process, its data in a directory (made 0700).  One
    process at a time has it open (HistoryBusy for the others): a run writing while another writes
    spools its rows beside it (ulma.history.spool), taken in by the next ulma that opens it."""

    def __init__(self, dsn: Dsn, *, create: bool) -> None:
        self.dsn = dsn
        if not create and not os.path.isdir(dsn.path):
            raise HistoryError(f"no history in chDB {dsn.path} yet (`ulma run --history` writes it)")
        try:
            os.makedirs(dsn.path, mode=0o700, exist_ok=True)
            parent = os.path.dirname(dsn.path.rstrip("/"))
            if os.path.basename(parent) == "ulma":  # the default place: ulma's own directory too
                os.chmod(parent, 0o700)
            os.chmod(dsn.path, 0o700)
        except OSError as exc:
            raise HistoryError(f"cannot make {dsn.path}: {exc.strerror}") from None
        try:
            session: Any = importlib.import_module("chdb.session")
        except ImportError:
            raise HistoryError(missing("needs chDB")) from None
        holder = chdb_holder(dsn.path)
        if holder is not None:
            by = f" (pid {holder})" if holder else ""
            raise HistoryBusy(f"the history in chDB {dsn.path} is open in another ulma{by}: chDB lets "
                              "one process at a time (ask when that run ends, or keep the history in a "
                              "ClickHouse server)")
        try:
            self._session: Any = session.Session(dsn.path)
        except Exception as exc:
            raise HistoryError(f"cannot open chDB at {dsn.path}: {first_line(exc)}") from None
        from ulma.history import spool

        spool.take_in(self, dsn.path)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            result = self._session.query(sql, "JSONCompact")
        except Exception as exc:
            raise HistoryError(f"chDB {self.dsn.path}: {first_line(exc)}") from None
        data = result.bytes() if hasattr(result, "bytes") else bytes(result)
        if not data.strip():
            return []
        return [tuple(row) for row in json.loads(data)["data"]]

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        if not rows:
            return
        values = ",".join("(" + ",".join(literal(v) for v in row) + ")" for row in rows)
        self.query(f"INSERT INTO {self.dsn.db}.{table} ({', '.join(columns)}) VALUES {values}")

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing what failed to open, or twice: nothing to tell
            self._session.close()


class ServerStore:
    """A ClickHouse server, or a cluster through one of its servers (clickhouse-driver)."""

    CONNECT_TIMEOUT = 3
    TIMEOUT = 60

    def __init__(self, dsn: Dsn, host: str | None = None, port: int | None = None) -> None:
        self.dsn = dsn
        try:
            driver: Any = importlib.import_module("clickhouse_driver")
        except ImportError:
            raise HistoryError(missing(f"{dsn.where()} needs clickhouse-driver")) from None
        # it logs a connection that failed, traceback and all, before raising what we say in a line
        import logging

        quiet = logging.getLogger("clickhouse_driver")
        if not quiet.handlers:
            quiet.addHandler(logging.NullHandler())
            quiet.propagate = False
        self._host, self._port = host or dsn.host, port or dsn.port
        # a Distributed table's insert returns once every shard has its rows
        self._client: Any = driver.Client(self._host, port=self._port, user=dsn.user,
                                          password=dsn.password, connect_timeout=self.CONNECT_TIMEOUT,
                                          send_receive_timeout=self.TIMEOUT,
                                          settings={"insert_distributed_sync": 1})

    def _fail(self, exc: BaseException) -> HistoryError:
        return HistoryError(f"clickhouse://{self._host}:{self._port}: {first_line(exc)}")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            return [tuple(row) for row in self._client.execute(sql)]
        except Exception as exc:
            raise self._fail(exc) from None

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        if not rows:
            return
        try:
            self._client.execute(f"INSERT INTO {self.dsn.db}.{table} ({', '.join(columns)}) VALUES",
                                 [tuple(r) for r in rows])
        except Exception as exc:
            raise self._fail(exc) from None

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a connection that never came up
            self._client.disconnect()

    def shards(self) -> Iterator[ServerStore]:
        """Each shard of the cluster, this one among them (the others closed after their turn)."""
        name = self.dsn.cluster
        shards = self.query(f"SELECT DISTINCT host_name, port FROM system.clusters WHERE cluster = "
                            f"{literal(name or '')}")
        if not shards:
            raise HistoryError(f"clickhouse://{self._host}:{self._port} knows no cluster {name!r} "
                               "(its remote_servers)")
        for host, port in shards:
            shard = self if (host, port) == (self._host, self._port) else ServerStore(self.dsn, host, port)
            try:
                yield shard
            finally:
                if shard is not self:
                    shard.close()

    def create(self) -> None:
        """The tables: on this server, or on every shard of the cluster with a Distributed table
        over them on each."""
        db = self.dsn.db
        if self.dsn.cluster is None:
            for sql in ddl(db):
                self.query(sql)
            return
        for shard in self.shards():
            for sql in ddl(db, "_local"):
                shard.query(sql)
            for table in TABLES:
                shard.query(f"CREATE TABLE IF NOT EXISTS {db}.{table} AS {db}.{table}_local "
                            f"ENGINE = Distributed({self.dsn.cluster}, {db}, {table}_local, rand())")


DAILY = ("functions", "edges", "objects")  # the tables partitioned by day (runs: a row a run, kept)


def prune(store: Store, before: int) -> list[dict[str, Any]]:
    """Drops the days (partitions) of DAILY wholly before the day `before` (Unix seconds) falls in,
    as the server reads its days; on a cluster on every shard.  The days dropped, per table."""
    db = store.dsn.db
    day = int(store.query(f"SELECT toYYYYMMDD(toDateTime({int(before)}))")[0][0])
    on_shards = isinstance(store, ServerStore) and store.dsn.cluster is not None
    places: Iterator[Store] = iter((store,))
    if isinstance(store, ServerStore) and on_shards:
        places = store.shards()
    suffix = "_local" if on_shards else ""
    dropped: dict[tuple[str, str], int] = {}
    for place in places:
        for table in DAILY:
            name = table + suffix
            found = place.query(f"SELECT partition, sum(rows) FROM system.parts WHERE database = "
                                f"{literal(db)} AND table = {literal(name)} AND active GROUP BY partition")
            for partition, rows in found:
                part = str(partition).strip("'")
                if part.isdigit() and int(part) < day:
                    place.query(f"ALTER TABLE {db}.{name} DROP PARTITION {part}")
                    dropped[(table, part)] = dropped.get((table, part), 0) + int(rows)
    return [{"table": t, "day": d, "rows": n} for (t, d), n in sorted(dropped.items())]
