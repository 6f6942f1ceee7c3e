"""``ulma history``: the fleet history that ``ulma run --history`` writes (ulma.history), read
back -- ``top``, ``trend``, ``callers``, ``compare``, ``hosts``, ``runs``; a table on the terminal, JSON with
``--json``.  Also the ``--history [DSN]`` option of ``ulma run`` and ``ulma attach``.

Imports stay light here: `ulma run` loads this module on its way to the program; the store's
client (chDB, clickhouse-driver) and rich are loaded when used."""

from __future__ import annotations

import argparse
import sys

from ulma.cli.errors import Parser, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ulma.history.dsn import Dsn
    from ulma.history.push import PprofPusher
    from ulma.history.store import Store
    from ulma.history.writer import HistoryWriter
    from ulma.monitor.profile import Profile

HELP = ("read the fleet history that `run --history` writes: top, trend, callers, compare, hosts, runs, "
        "types; prune drops old days")
DSN_HELP = ("clickhouse://HOST[:PORT][/DB][?cluster=NAME] for a ClickHouse server or cluster, "
            "chdb:PATH for an embedded chDB in PATH; none: the embedded chDB under "
            "$XDG_DATA_HOME/ulma/history")


# -- `ulma run --history`, `ulma attach --history` ---------------------------------------------

def add_history_arguments(p: argparse.ArgumentParser, argv: list[str], *, program: bool = True) -> list[str]:
    """Adds --history [DSN]; returns `argv` with a bare --history spelled out (``--history=`` or
    ``--history=DSN``), so that the word after it is the DSN only if it looks like one (a program,
    a pid are not).  `program`: argv ends with a program and its arguments (`ulma run`)."""
    p.add_argument("--history", nargs="?", const="", default=None, metavar="DSN",
                   help="write the run's figures per second and per function into the fleet history "
                        f"while it runs (read them with `ulma history`): {DSN_HELP}")
    p.add_argument("--push-pprof", metavar="URL",
                   help="POST a gzipped pprof profile of each function's self time and calls to URL "
                        "every --push-interval seconds while the program runs, and at the end "
                        "(Grafana Pyroscope's /ingest?name=APP&format=pprof, an OpenTelemetry "
                        "collector, ...)")
    p.add_argument("--push-interval", type=float, default=10.0, metavar="SECONDS",
                   help="seconds between two --push-pprof profiles (default: 10)")
    if "--history" not in argv:
        return argv
    from ulma.history.dsn import looks_like

    valued: set[str] = set()
    if program:
        from ulma.cli.run import valued_options

        valued = valued_options(p) - {"--history"}
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--history":
            dsn = i + 1 < len(argv) and looks_like(argv[i + 1])
            out.append("--history=" + argv[i + 1] if dsn else "--history=")
            i += 2 if dsn else 1
            continue
        # the program and its arguments from here, as ulma.cli.run.split_argv finds them
        if program and (tok == "--" or tok.startswith("-m") or not tok.startswith("-") or tok == "-"):
            return [*out, *argv[i:]]
        step = 2 if tok in valued else 1
        out += argv[i:i + step]
        i += step
    return out


def history_dsn(opts: argparse.Namespace) -> Dsn | None:
    """--history's DSN, checked before anything runs (one line: malformed, or its client missing)."""
    from ulma.history import HistoryError
    from ulma.history.dsn import parse
    from ulma.history.store import check_client

    if getattr(opts, "history", None) is None:
        return None
    try:
        dsn = parse(opts.history)
        check_client(dsn)
    except HistoryError as exc:
        raise UsageError(f"--history {exc}" if str(exc).startswith("needs") else str(exc)) from None
    return dsn


def observed(opts: argparse.Namespace) -> bool:
    """--history or --push-pprof asked for."""
    return getattr(opts, "history", None) is not None or bool(getattr(opts, "push_pprof", None))


def check_history(opts: argparse.Namespace) -> None:
    """--history's DSN and --push-pprof's URL, if asked for, before anything runs (they go with
    every view: ulma.cli.watchers)."""
    if observed(opts):
        check_observers(opts)


def check_observers(opts: argparse.Namespace) -> None:
    """--history's DSN and --push-pprof's URL, before anything runs."""
    opts.history_dsn = history_dsn(opts)
    if opts.push_pprof:
        from ulma.history.push import check_url

        why = check_url(opts.push_pprof)
        if why:
            raise UsageError(why)


class Observers:
    """What watches a run's live snapshots from threads of their own: the history writer, the
    pprof pusher."""

    def __init__(self, opts: argparse.Namespace, pid: int, command: str) -> None:
        self.each: list[HistoryWriter | PprofPusher] = []
        if getattr(opts, "history_dsn", None) is not None:
            from ulma.history.writer import HistoryWriter

            self.each.append(HistoryWriter(opts.history_dsn, pid, command))
        if opts.push_pprof:
            from ulma.history.push import PprofPusher

            self.each.append(PprofPusher(opts.push_pprof, opts.push_interval, command))

    def start(self, snapshot: Callable[[], Profile]) -> None:
        for one in self.each:
            one.start(snapshot)

    def stop(self) -> None:
        """No more snapshots (before the session's final figures are taken)."""
        for one in self.each:
            one.stop()

    def close(self, final: Profile | None) -> None:
        """The final figures written and pushed; what to say, said."""
        for one in self.each:
            said = one.close(final)
            if said:
                sys.stderr.write(f"ulma: {said}\n")


# -- `ulma history` ---------------------------------------------------------------------------

STEPS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def when(text: str) -> int:
    """--since/--until: 90s, 30m, 2h, 7d, 1w ago; Unix seconds; or an ISO date and time (local
    unless it says its zone)."""
    import datetime
    import time

    t = text.strip()
    if t == "now":
        return int(time.time())
    if len(t) > 1 and t[-1] in _UNITS and t[:-1].isdigit():
        return int(time.time()) - int(t[:-1]) * _UNITS[t[-1]]
    if t.isdigit():
        return int(t)
    try:
        return int(datetime.datetime.fromisoformat(t).timestamp())
    except (ValueError, OverflowError, OSError):
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (try 1h, 30m, 7d, Unix seconds or "
                                         "2025-01-31T12:00)") from None


def _parser() -> Parser:
    p = Parser(prog="ulma history", description=HELP)
    sub = p.add_subparsers(dest="what", metavar="{top,trend,callers,compare,hosts,runs,types,prune}",
                           parser_class=Parser)

    def common(q: argparse.ArgumentParser, scope: bool = True) -> None:
        q.add_argument("--dsn", default=None, metavar="DSN", help=f"where the history is: {DSN_HELP}")
        q.add_argument("--json", action="store_true", help="print JSON instead of a table")
        q.add_argument("--html", metavar="FILE",
                       help="also write the answer as a page that draws it (a trend's split per step, "
                            "top's and compare's bars, objects per type) and shows its table; it opens "
                            "offline in a browser")
        if scope:
            q.add_argument("--since", type=when, metavar="TIME",
                           help="from TIME (1h, 30m, 7d ago; Unix seconds; 2025-01-31T12:00) "
                                "(default: the beginning)")
            q.add_argument("--until", type=when, metavar="TIME", help="up to TIME (default: now)")
            q.add_argument("--host", help="only this host's rows")
            q.add_argument("--run", metavar="RUN_ID", help="only this run's rows (see `ulma history runs`)")

    q = sub.add_parser("top", help="the functions with the most time over a range, figures summed")
    common(q)
    q.add_argument("--limit", type=int, default=20, metavar="N", help="rows (default: 20; 0: all)")
    q = sub.add_parser("trend", help="one function's figures per second (or minute, hour, day)")
    q.add_argument("function", help="the function's name, as the report shows it")
    q.add_argument("--file", help="only the function of that name in this file")
    q.add_argument("--step", choices=tuple(STEPS), default="second",
                   help="one row per second, minute, hour or day (default: second)")
    common(q)
    q = sub.add_parser("callers", help="who called a function: calls and its time from each caller")
    q.add_argument("function", help="the function's name, as the report shows it")
    q.add_argument("--file", help="only the function of that name in this file")
    common(q)
    q = sub.add_parser("compare", help="which functions got slower per call in RUN than in BASELINE, "
                                       "and in which part of the split")
    q.add_argument("run", metavar="RUN")
    q.add_argument("baseline", metavar="BASELINE")
    q.add_argument("--threshold", type=float, default=10.0, metavar="PCT",
                   help="slower: time per call up by more than PCT %% (default: 10)")
    common(q, scope=False)
    q = sub.add_parser("hosts", help="per host: processes, runs, first and last second, totals")
    common(q)
    q = sub.add_parser("runs", help="the runs in the history, with their ids (for compare and --run)")
    common(q)
    q = sub.add_parser("types", help="runs with --objects: objects made, destroyed and live per type")
    common(q)
    q.add_argument("--limit", type=int, default=20, metavar="N", help="rows (default: 20; 0: all)")
    q = sub.add_parser("prune", help="retention: drop every day of rows before TIME's day (whole days: "
                                     "the tables' partitions), on every shard of a cluster")
    q.add_argument("--before", type=when, required=True, metavar="TIME",
                   help="the first day kept is TIME's (30d: the last 30 days and today)")
    common(q, scope=False)
    return p


def execute(argv: list[str]) -> int:
    from ulma.history import HistoryError

    parser = _parser()
    opts = parser.parse(argv)
    if opts.what is None:
        raise UsageError("ulma history needs one of top, trend, callers, compare, hosts, runs, types, prune "
                         "(see `ulma history --help`)")
    if opts.html:
        from ulma.format import files

        try:
            files.check(opts.html)
        except OSError as exc:
            raise UsageError(f"cannot write --html {opts.html}: {exc.strerror or exc}") from None
    try:
        answer = _ask(opts)
    except HistoryError as exc:
        raise UsageError(str(exc), 1) from None
    if opts.html:
        _write_page(opts, answer)
    if opts.json:
        import json

        sys.stdout.write(json.dumps(answer, indent=1) + "\n")
    else:
        _show(opts.what, answer)
    return 0


def _write_page(opts: argparse.Namespace, answer: dict[str, Any]) -> None:
    from ulma.format import files
    from ulma.web import history_page

    title = {"trend": f"trend of {getattr(opts, 'function', '')}",
             "callers": f"callers of {getattr(opts, 'function', '')}",
             "compare": f"{getattr(opts, 'run', '')} against {getattr(opts, 'baseline', '')}"}.get(
                 opts.what, opts.what)
    try:
        with files.writing_text(opts.html) as f:  # 0600, no link followed
            f.write(history_page.render(opts.what, title, answer))
    except OSError as exc:
        raise UsageError(f"cannot write --html {opts.html}: {exc.strerror or exc}") from None


def _ask(opts: argparse.Namespace) -> dict[str, Any]:
    from ulma.history import HistoryError, queries
    from ulma.history.dsn import parse
    from ulma.history.store import check_client, open_store

    try:
        dsn = parse(opts.dsn)
        check_client(dsn)
    except HistoryError as exc:
        raise UsageError(f"ulma history {exc}" if str(exc).startswith("needs") else str(exc)) from None
    store = open_store(dsn, create=False)
    try:
        return _answer(store, opts, queries)
    finally:
        store.close()


def _answer(store: Store, opts: argparse.Namespace, queries: Any) -> dict[str, Any]:
    if opts.what == "compare":
        answer: dict[str, Any] = queries.compare(store, opts.run, opts.baseline, opts.threshold)
        return answer
    if opts.what == "prune":
        from ulma.history.store import prune

        return {"before": opts.before, "dropped": prune(store, opts.before)}
    scope = queries.Scope(opts.since, opts.until, opts.host, opts.run)
    if opts.since is not None and opts.until is not None and opts.since > opts.until:
        from ulma.history import HistoryError

        raise HistoryError("--since is after --until")
    if opts.what == "top":
        return {"since": opts.since, "until": opts.until, "functions": queries.top(store, scope, opts.limit)}
    if opts.what == "trend":
        found: dict[str, Any] = queries.trend(store, scope, opts.function, opts.file, STEPS[opts.step])
        return found
    if opts.what == "callers":
        called: dict[str, Any] = queries.callers(store, scope, opts.function, opts.file)
        return called
    if opts.what == "hosts":
        return {"hosts": queries.hosts(store, scope)}
    if opts.what == "types":
        return {"since": opts.since, "until": opts.until, "types": queries.types(store, scope, opts.limit)}
    return {"runs": queries.runs(store, scope)}


def _show(what: str, answer: dict[str, Any]) -> None:
    import datetime
    import os

    from rich.console import Console
    from rich.table import Table

    from ulma.views.units import fmt_ns

    def at(t: int) -> str:
        return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")

    def ns(v: int | None) -> str:
        return "" if v is None else fmt_ns(v)

    def place(f: dict[str, Any]) -> str:  # the file's name: the JSON has its path
        return f"{os.path.basename(f['file'])}:{f['line']}"

    split = ("cpu_ns", "overhead_ns", "wait_ns", "unmeasured_ns")
    heads = ("CPU", "overhead", "waiting", "unmeasured")
    if what == "top":
        table = Table(title="top functions")
        for h in ("function", "file:line", "calls", "total", "self", *heads):
            table.add_column(h, justify="left" if h in ("function", "file:line") else "right")
        for f in answer["functions"]:
            table.add_row(f["name"], place(f), f"{f['calls']:,}", ns(f["total_ns"]),
                          ns(f["self_ns"]), *(ns(f[c]) for c in split))
    elif what == "trend":
        places = ", ".join(f"{p['file']}:{p['line']}" for p in answer["places"])
        table = Table(title=f"{answer['name']} ({places}) per {answer['step']} s")
        for h in ("at", "calls", "total", "self", *heads):
            table.add_column(h, justify="left" if h == "at" else "right")
        for p in answer["points"]:
            table.add_row(at(p["ts"]), f"{p['calls']:,}", ns(p["total_ns"]), ns(p["self_ns"]),
                          *(ns(p[c]) for c in split))
    elif what == "callers":
        table = Table(title=f"callers of {answer['name']}")
        for h in ("caller", "file:line", "calls", "total"):
            table.add_column(h, justify="left" if h in ("caller", "file:line") else "right")
        for f in answer["callers"]:
            table.add_row(f["name"], place(f), f"{f['calls']:,}", ns(f["total_ns"]))
    elif what == "compare":
        table = Table(title=f"{answer['run']} against {answer['baseline']} (per call)")
        for h in ("function", "file:line", "calls", "before", "now", "change", "Δ CPU", "Δ overhead",
                  "Δ waiting", "Δ unmeasured", "slower"):
            table.add_column(h, justify="left" if h in ("function", "file:line") else "right")
        for f in answer["functions"]:
            d = f["delta_per_call_ns"]
            change = "" if f["change"] is None else f"{f['change'] * 100:+.1f}%"
            table.add_row(f["name"], place(f), f"{f['calls']:,}",
                          ns(f["baseline_per_call_ns"]), ns(f["per_call_ns"]), change,
                          *(ns(d[c]) for c in split), "yes" if f["slower"] else "")
    elif what == "hosts":
        table = Table(title="hosts")
        for h in ("host", "processes", "runs", "first", "last", "calls", "total"):
            table.add_column(h, justify="left" if h == "host" else "right")
        for r in answer["hosts"]:
            table.add_row(r["host"], str(r["processes"]), str(r["runs"]), at(r["first"]), at(r["last"]),
                          f"{r['calls']:,}", ns(r["total_ns"]))
    elif what == "prune":
        days = sorted({d["day"] for d in answer["dropped"]})
        rows = sum(d["rows"] for d in answer["dropped"])
        sys.stdout.write(f"dropped {len(days)} days ({', '.join(days) or 'none'}): {rows:,} rows\n")
        return
    elif what == "types":
        table = Table(title="objects per type")
        for h in ("type", "live", "made", "destroyed", "made before, destroyed", "bytes live"):
            table.add_column(h, justify="left" if h == "type" else "right")
        for t in answer["types"]:
            table.add_row(t["name"], f"{t['live']:,}", f"{t['created']:,}", f"{t['freed']:,}",
                          f"{t['freed_untracked']:,}", f"{t['bytes']:,}" if t["bytes"] else "")
    else:
        table = Table(title="runs")
        for h in ("run", "host", "pid", "command", "first", "last", "calls", "total"):
            table.add_column(h, justify="right" if h in ("pid", "calls", "total") else "left")
        for r in answer["runs"]:
            table.add_row(r["run_id"], r["host"], str(r["pid"]), r["command"], at(r["first"]), at(r["last"]),
                          f"{r['calls']:,}", ns(r["total_ns"]))
    # not a terminal: wide enough for the columns rather than 80 (a terminal: its own width)
    Console(width=None if sys.stdout.isatty() else 200).print(table)
