"""``ulma attach PID``: connect to a running program's idle agent, watch, detach."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from ulma.cli.errors import Parser, UsageError
from ulma.cli.run import (
    add_clock_argument,
    add_limit_argument,
    add_measure_arguments,
    add_ring_argument,
    check_output,
)
from ulma.exporters import json_report
from ulma.monitor import session as sessions
from ulma.monitor.attach import AttachError, Attachment
from ulma.views.report import print_report
from ulma.views.units import fmt_ns

HELP = "attach to a running program that carries an idle ulma agent; Ctrl-C detaches"


def _watch(att: Attachment, pid: int, duration: float | None, clock: str) -> str:
    """The live view over an attachment; closing it (q, Ctrl-C) detaches."""
    from ulma.monitor.live import LiveAttachment
    from ulma.views.live import LiveView, ViewSettings

    live = LiveAttachment(att, duration).start()
    try:
        LiveView(live, ViewSettings(title=f"attached to process {pid}", exit_when_done=True,
                                       clock=clock)).run()
    except Exception as exc:
        sys.stderr.write(f"ulma: the live view failed ({type(exc).__name__}: {exc}); detaching\n")
    live.stop()
    if live.error is not None:
        sys.stderr.write(f"ulma: error: the monitor stopped draining: {live.error}\n")
    return live.why or "stopped"


def execute(argv: list[str]) -> int:
    p = Parser(prog="ulma attach", description=HELP)
    p.add_argument("pid", type=int, help="the process to attach to")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="detach after SECONDS")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    add_ring_argument(p)
    add_limit_argument(p)
    p.add_argument("--no-report", action="store_true", help="print no report after detaching")
    p.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                   help="show the live view while attached (default: on a terminal); "
                        "q or Ctrl-C in it detaches")
    add_measure_arguments(p)
    add_clock_argument(p)
    opts = p.parse(argv)
    terminal = all(s is not None and s.isatty() for s in (sys.stdin, sys.stdout, sys.stderr))
    live = terminal if opts.live is None else opts.live
    if live and not all(s is not None and s.isatty() for s in (sys.stdin, sys.stderr)):
        raise UsageError("--live needs a terminal on stdin and stderr")
    if opts.json:
        check_output(opts.json)
    if live:  # import the view before attaching: a busy import would starve the drain thread
        import ulma.views.live  # noqa: F401
    try:
        att = Attachment(opts.pid, sessions.Options(
            engine="auto", ring_bytes=opts.ring_size, native_calls=opts.native_calls,
            cpu_interval_us=opts.cpu_interval, exclude=tuple(opts.exclude)))
    except AttachError as exc:
        raise UsageError(str(exc), 1) from None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if live:
            why = _watch(att, opts.pid, opts.duration, opts.clock)
        else:
            sys.stderr.write(f"ulma: attached to process {opts.pid}; Ctrl-C detaches\n")
            why = att.drain_until(stop, opts.duration)
    finally:
        signal.signal(signal.SIGINT, old)
    profile = att.detach()
    ended = "the program ended" if why == "exited" else "detached; the program goes on"
    sys.stderr.write(f"ulma: {ended} after {fmt_ns(profile.wall_ns)} attached\n")
    if opts.json:
        try:
            json_report.write(profile, opts.json)
        except OSError as exc:
            raise UsageError(f"cannot write {opts.json}: {exc.strerror}", 1) from None
    if not opts.no_report:
        print_report(profile, sys.stderr, limit=opts.limit, clock=opts.clock)
    return 0



