"""``ulma record``: run a program and keep its whole event stream in a trace file."""

from __future__ import annotations

import sys

from ulma.cli import run
from ulma.cli.errors import UsageError
from ulma.views.units import fmt_ns

HELP = "run a program and keep every event in a trace file (read it with `ulma report`)"
USAGE = "ulma record -o TRACE [options] (script.py | -m module) [args ...]"


def execute(argv: list[str]) -> int:
    opts, rest = run.parse(argv, prog="ulma record", usage=USAGE, description=HELP)
    if not opts.output:
        raise UsageError("ulma record needs -o TRACE, the file to write")
    # a trace file holds one process: its children are not followed (they would be in no file)
    opts.no_children = True
    result = run.start(opts, rest)
    if not result.started:
        return run.not_started(opts, rest, result)
    p = result.profile
    if not result.trace_error:
        sys.stderr.write(f"ulma: recorded {p.events:,} events ({p.dropped:,} dropped) from "
                         f"{len(p.threads)} threads in {fmt_ns(p.wall_ns)} to {opts.output}\n")
    if opts.json:
        from ulma.exporters import json_report

        try:
            json_report.write(p, opts.json)
        except OSError as exc:
            sys.stderr.write(f"ulma: error: cannot write {opts.json}: {exc.strerror}\n")
            return result.returncode or 1
    return run.exit_code(result)
