"""``ulma attach PID``: connect to a running program's idle agent, watch, detach."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from types import FrameType

from ulma import inject
from ulma.cli.errors import Parser, UsageError
from ulma.cli.history import add_history_arguments, check_history
from ulma.cli.run import (
    add_clock_argument,
    add_dial_arguments,
    add_limit_argument,
    add_loop_argument,
    add_measure_arguments,
    add_ring_argument,
    add_stream_arguments,
    add_web_argument,
    check_output,
    check_streams,
    objects_wanted,
)
from ulma.cli.watchers import Watchers
from ulma.exporters import json_report
from ulma.fleet.options import add_stream_to_argument, streamer_from
from ulma.monitor import session as sessions
from ulma.monitor import terminal
from ulma.monitor.attach import AttachError, Attachment
from ulma.views.report import print_report
from ulma.views.units import fmt_ns

HELP = "attach to a running Python program (loading ulma's agent into it if needed); Ctrl-C detaches"


class Detaching:
    """Ctrl-C, SIGTERM and SIGHUP detach: the program is not ulma's, it goes on.
    SIGHUP from a terminal that went away (or a redraw that finds it gone, with
    SIGHUP ignored) also points the descriptors that were the terminal at
    /dev/null, so the report and --json are still written on the way out."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.terminals = terminal.terminals()
        self.gone = False
        self._old: dict[int, terminal.Handler] = {}

    def terminal_gone(self) -> bool:
        if not self.gone and terminal.hung_up(self.terminals):
            self.gone = True
            terminal.let_go(self.terminals)
        return self.gone

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.terminal_gone()
        self.stop.set()

    def __enter__(self) -> Detaching:
        self._old = {sig: signal.getsignal(sig) for sig in self.SIGNALS}
        for sig in self.SIGNALS:
            if self._old[sig] != signal.SIG_IGN:  # nohup: ignored still
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        if self.stop.is_set():  # a second signal must not cut the report and --json short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _watch(att: Attachment, pid: int, duration: float | None, clock: str, signals: Detaching,
           refresh_ms: int | None) -> str:
    """The live view over an attachment; closing it (q, Ctrl-C, SIGTERM, SIGHUP) detaches."""
    from ulma.monitor.live import LiveAttachment
    from ulma.views.live import LiveView, ViewSettings

    live = LiveAttachment(att, duration).start()
    settings = ViewSettings(title=f"attached to process {pid}", exit_when_done=True, clock=clock,
                            close_requested=signals.stop, terminal_gone=signals.terminal_gone)
    if refresh_ms:
        settings.refresh_seconds = refresh_ms / 1000
    try:
        LiveView(live, settings).run()
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
    p.add_argument("-o", "--output", metavar="TRACE",
                   help="also keep the event stream while attached in the trace file TRACE "
                        "(see `ulma report`)")
    add_ring_argument(p)
    add_limit_argument(p)
    p.add_argument("--no-report", action="store_true", help="print no report after detaching")
    p.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                   help="show the live view while attached (default: on a terminal); "
                        "q or Ctrl-C in it detaches")
    add_measure_arguments(p)
    add_loop_argument(p)
    add_clock_argument(p)
    inject.add_arguments(p)
    add_stream_arguments(p)
    add_dial_arguments(p)
    add_web_argument(p)
    add_stream_to_argument(p)
    argv = add_history_arguments(p, argv, program=False)  # --history [DSN] (ulma.cli.history)
    opts = p.parse(argv)
    opts.streamer = streamer_from(opts)  # --to
    check_history(opts)  # --history, --push-pprof
    if opts.burst and opts.budget:
        raise UsageError("--burst and --budget cannot go together: both switch functions off and on")
    inject.check_arguments(opts)
    if opts.web and opts.live:
        raise UsageError("--web and --live cannot go together: the view is in the browser or on the terminal")
    terminal = all(s is not None and s.isatty() for s in (sys.stdin, sys.stdout, sys.stderr))
    live = terminal if opts.live is None and not opts.web else bool(opts.live)
    if live and not all(s is not None and s.isatty() for s in (sys.stdin, sys.stderr)):
        raise UsageError("--live needs a terminal on stdin and stderr")
    if opts.json:
        check_output(opts.json)
    if opts.output:
        check_output(opts.output)
        if opts.output == opts.json:
            raise UsageError(f"{opts.output} is named by two outputs: give each its own file")
    check_streams(opts, opts.json, opts.output)
    if live:  # import the view before attaching: a busy import would starve the drain thread
        import ulma.views.live  # noqa: F401
    if opts.web:  # the same for the server
        importlib.import_module("ulma.web.cli")
    try:
        loaded = inject.ensure_agent(opts.pid, opts.inject_timeout)
        if loaded:
            sys.stderr.write(f"ulma: {loaded}\n")
        att = Attachment(opts.pid, sessions.Options(
            engine="auto", ring_bytes=opts.ring_size, native_calls=opts.native_calls,
            cpu_interval_us=opts.cpu_interval, exclude=tuple(opts.exclude), only=tuple(opts.only),
            log_path=opts.log, jsonl_path=opts.jsonl, budget=opts.budget or 0.0,
            dial_seconds=opts.refresh / 1000 if opts.refresh else sessions.DIAL_SECONDS, burst=opts.burst,
            loop_block_ms=opts.loop_block, trace_path=opts.output, objects=objects_wanted(opts)))
    except AttachError as exc:
        raise UsageError(str(exc), 1) from None
    watchers = Watchers(opts)  # --to, --history, --push-pprof, whichever view drains
    watchers.start(att.session, att._stream_snapshot, opts.pid, f"attached to process {opts.pid}")
    with Detaching() as signals:
        if live:
            why = _watch(att, opts.pid, opts.duration, opts.clock, signals, opts.refresh)
        elif opts.web:
            from ulma.web.cli import watch_web

            why = watch_web(att, opts.pid, opts.duration, signals.stop, opts.refresh)
        else:
            sys.stderr.write(f"ulma: attached to process {opts.pid}; Ctrl-C detaches\n")
            why = att.drain_until(signals.stop, opts.duration)
        watchers.stop()  # no snapshot from here on: the session's final figures come next
        profile = att.detach()
    watchers.finish(profile)
    for line in att.streams_said:  # --log, --jsonl
        sys.stderr.write(f"ulma: {line}\n")
    if att.trace_error:
        sys.stderr.write(f"ulma: error: {att.trace_error}\n")
    ended = "the program ended" if why == "exited" else "detached; the program goes on"
    sys.stderr.write(f"ulma: {ended} after {fmt_ns(profile.wall_ns)} attached\n")
    if opts.json:
        try:
            json_report.write(profile, opts.json)
        except OSError as exc:
            raise UsageError(f"cannot write {opts.json}: {exc.strerror}", 1) from None
    if not opts.no_report:
        print_report(profile, sys.stderr, limit=opts.limit, clock=opts.clock)
    return 1 if any(line.startswith("error") for line in att.streams_said) else 0



