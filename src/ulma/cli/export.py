"""``ulma export``: convert a trace file for other tools."""

from __future__ import annotations

import os
import sys

from ulma.cli.errors import Parser, UsageError
from ulma.exporters.base import FORMATS, export
from ulma.format import trace

HELP = "convert a trace file to text, chrome, speedscope, pprof, collapsed, pstats or html"

FORMAT_HELP = {
    "text": "one event per line, tab-separated (see the README)",
    "chrome": "Trace Event JSON for ui.perfetto.dev and chrome://tracing",
    "speedscope": "speedscope's evented profiles, one per thread",
    "pprof": "gzipped profile.proto for `go tool pprof`",
    "collapsed": "folded stacks (a;b;c NS) for flamegraph tools",
    "pstats": "a cProfile-style stats file for pstats, snakeviz, gprof2dot",
    "html": "one self-contained page (opens offline): the table, a flame graph in four colours, "
            "each thread's timeline",
}


def execute(argv: list[str]) -> int:
    formats = "; ".join(f"{name}: {FORMAT_HELP[name]}" for name in FORMATS)
    parser = Parser(prog="ulma export", description=HELP)
    parser.add_argument("trace", help="the trace file (from `ulma record` or `ulma run -o`)")
    parser.add_argument("--format", "-f", required=True, choices=list(FORMATS), metavar="FORMAT",
                        help=f"the output format ({formats})")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="the file to write ('-' for standard output)")
    opts = parser.parse(argv)
    if opts.output != "-" and os.path.exists(opts.output) and os.path.exists(opts.trace) \
            and os.path.samefile(opts.output, opts.trace):
        raise UsageError(f"{opts.output} is the trace itself: give another output file")
    if os.path.isdir(opts.trace):  # a merged trace of several hosts (`ulma collect -o DIR`)
        from ulma.fleet.merged import export_fleet

        return export_fleet(opts.trace, opts.format, opts.output)
    try:
        run = export(opts.trace, opts.format, opts.output)
    except BrokenPipeError:
        # `ulma export ... -o - | head`: the reader stopped; end quietly, as
        # a program killed by SIGPIPE would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except trace.TraceError as exc:
        raise UsageError(str(exc), 1) from None
    except OSError as exc:
        target = opts.output if exc.filename in (opts.output, None) else exc.filename
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}", 1) from None
    for warning in run.warnings:
        sys.stderr.write(f"ulma: warning: {warning}\n")
    return 0
