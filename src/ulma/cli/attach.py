"""``ulma attach PID``: connect to a running program's idle agent, watch, detach."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

from ulma.cli.errors import Parser, UsageError, parse_size
from ulma.exporters import json_report
from ulma.monitor import session as sessions
from ulma.monitor.attach import AttachError, Attachment
from ulma.views.report import print_report
from ulma.views.units import fmt_ns

HELP = "attach to a running program that carries an idle ulma agent; Ctrl-C detaches"


def execute(argv: list[str]) -> int:
    p = Parser(prog="ulma attach", description=HELP)
    p.add_argument("pid", type=int, help="the process to attach to")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="detach after SECONDS")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    p.add_argument("--ring-size", type=parse_size, default=sessions.DEFAULT_RING_BYTES, metavar="SIZE")
    p.add_argument("--limit", type=int, default=30, metavar="N", help="rows in the report (default: 30)")
    p.add_argument("--no-report", action="store_true", help="print no report after detaching")
    opts = p.parse_args(argv)
    try:
        att = Attachment(opts.pid, sessions.Options(engine="auto", ring_bytes=opts.ring_size))
    except AttachError as exc:
        raise UsageError(str(exc), 1) from None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sys.stderr.write(f"ulma: attached to process {opts.pid}; Ctrl-C detaches\n")
    try:
        why = att.drain_until(stop, opts.duration)
    finally:
        signal.signal(signal.SIGINT, old)
    profile = att.detach()
    ended = "the program ended" if why == "exited" else "detached; the program goes on"
    sys.stderr.write(f"ulma: {ended} after {fmt_ns(profile.wall_ns)} attached\n")
    if opts.json:
        json_report.write(profile, opts.json)
    if not opts.no_report:
        print_report(profile, sys.stderr, limit=opts.limit)
    return 0



