"""``ulma report``: the end-of-run report, computed from a trace file."""

from __future__ import annotations

import sys

from ulma.cli.errors import Parser, UsageError
from ulma.cli.run import add_clock_argument, add_limit_argument, add_loop_argument
from ulma.exporters import json_report
from ulma.format import trace
from ulma.monitor.offline import load_profile
from ulma.views.report import print_report

HELP = "print the report of a trace file written by `ulma record` or `ulma run -o`"


def execute(argv: list[str]) -> int:
    parser = Parser(prog="ulma report", description=HELP)
    parser.add_argument("trace", help="the trace file")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    add_limit_argument(parser)
    add_clock_argument(parser)
    add_loop_argument(parser, default=None)
    opts = parser.parse(argv)
    try:
        reader = trace.TraceReader(opts.trace)
        profile = load_profile(reader, opts.loop_block)
    except trace.TraceError as exc:
        raise UsageError(str(exc), 1) from None
    for warning in reader.warnings:
        sys.stderr.write(f"ulma: warning: {warning}\n")
    if opts.json:
        try:
            json_report.write(profile, opts.json)
        except OSError as exc:
            raise UsageError(f"cannot write {opts.json}: {exc.strerror}", 1) from None
    print_report(profile, sys.stdout, limit=opts.limit, clock=opts.clock)
    return 0
