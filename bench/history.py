"""What the fleet history (ulma.history) sustains, on the embedded chDB and on a two-shard
ClickHouse cluster (two Debian clickhouse-server processes on loopback, ulma.history.localcluster).

    python bench/history.py [--backends chdb,cluster] [--rows 10000000] [--repeat 5]

For each backend, in a fresh store (a temporary directory, removed after):

- write rows/s: rows through the path `ulma run --history` takes (Store.insert: chDB's SQL VALUES,
  clickhouse-driver's native protocol into the Distributed table, synchronous), in batches of
  BATCH rows -- the rows of one second of a program with BATCH functions active -- median of
  --repeat batches, each a new second;
- bulk rows/s: --rows synthetic rows made in the store by one INSERT ... SELECT from numbers()
  (2,000 functions, 20 hosts, 200 runs, spread over the last 7 days);
- query latency, median of --repeat: "top 20 over the last hour" (queries.top with --since 1h, as
  `ulma history top --since 1h`), "top 20 over everything" and one function's trend per minute over
  the last day.

Prints a table and, with --json FILE, the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from ulma.history import queries
from ulma.history.dsn import Dsn, parse
from ulma.history.localcluster import LocalCluster
from ulma.history.store import FIGURES, FUNCTION_COLUMNS, Row, Store, open_store

BATCHES = (100, 1_000, 10_000)
FUNCTIONS, HOSTS, RUNS, SPAN = 2_000, 20, 200, 7 * 86400


def synthetic(db: str, rows: int, now: int) -> str:
    """rows rows of made-up history, the last SPAN seconds up to `now`: one INSERT ... SELECT."""
    figures = ", ".join({
        "calls": "1 + number % 97",
        "total_ns": "1000 + (number * 7919) % 5000000",
        "self_ns": "500 + (number * 7919) % 2500000",
    }.get(name, "(number * 104729) % 1000000") for name in FIGURES)
    return (f"INSERT INTO {db}.functions ({', '.join(FUNCTION_COLUMNS)}) "
            f"SELECT toDateTime({now} - intDiv(number * {SPAN}, {rows})), "
            f"concat('host', toString(number % {HOSTS})), toUInt32(1000 + number % {RUNS}), "
            f"concat('run', toString(number % {RUNS})), concat('function_', toString(number % {FUNCTIONS})), "
            f"concat('/srv/app/module_', toString(number % {FUNCTIONS} % 50), '.py'), "
            f"toUInt32(number % {FUNCTIONS}), {figures} FROM numbers({rows})")


def timed(f: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@contextmanager
def backend(name: str, tmp: Path) -> Iterator[Dsn]:
    if name == "chdb":
        yield parse(f"chdb:{tmp / 'chdb'}")
        return
    with LocalCluster(tmp / "cluster") as cluster:
        yield parse(cluster.dsn())


def measure(name: str, rows: int, repeat: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="ulma-bench-history-"))
    out: dict[str, Any] = {"backend": name}
    try:
        with backend(name, tmp) as dsn:
            store: Store = open_store(dsn, create=True)
            second = int(time.time()) - 30 * 86400  # apart from the synthetic rows' range
            for batch in BATCHES:
                times = []
                for _ in range(repeat):
                    second += 1
                    data: list[Row] = [(second, "benchhost", 1, "benchrun", f"f{i}", "/srv/app/x.py", i,
                             *(i + k for k in range(len(FIGURES)))) for i in range(batch)]
                    t = time.perf_counter()
                    store.insert("functions", FUNCTION_COLUMNS, data)
                    times.append(time.perf_counter() - t)
                out[f"write_rows_per_s_batch_{batch}"] = round(batch / statistics.median(times))
                out[f"write_ms_batch_{batch}"] = round(statistics.median(times) * 1000, 2)
            now = int(time.time())
            t = time.perf_counter()
            store.query(synthetic(dsn.db, rows, now))
            bulk = time.perf_counter() - t
            out["bulk_rows"] = int(store.query(f"SELECT count() FROM {dsn.db}.functions")[0][0])
            out["bulk_rows_per_s"] = round(rows / bulk)
            hour = queries.Scope(since=now - 3600)
            out["top20_last_hour_ms"] = round(timed(lambda: queries.top(store, hour, 20), repeat) * 1000, 1)
            out["top20_last_hour_rows_in_range"] = int(store.query(
                f"SELECT count() FROM {dsn.db}.functions WHERE ts >= toDateTime({now - 3600})")[0][0])
            everything = queries.Scope()
            out["top20_all_ms"] = round(timed(lambda: queries.top(store, everything, 20), repeat) * 1000, 1)
            day = queries.Scope(since=now - 86400)
            out["trend_minute_last_day_ms"] = round(timed(
                lambda: queries.trend(store, day, "function_42", None, 60), repeat) * 1000, 1)
            store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--backends", default="chdb,cluster")
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", metavar="FILE")
    opts = p.parse_args()
    results = [measure(name, opts.rows, opts.repeat) for name in opts.backends.split(",")]
    keys = [k for k in results[0] if k != "backend"]
    print(f"{'':34}" + "".join(f"{r['backend']:>14}" for r in results))
    for k in keys:
        print(f"{k:34}" + "".join(f"{r.get(k, ''):>14}" for r in results))
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
