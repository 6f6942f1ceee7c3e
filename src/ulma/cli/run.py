"""``ulma run``: run a program with the agent on, drain it live, report at the end."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from ulma.agent import DEFAULT_CPU_INTERVAL_US, ENGINES, resolve_engine
from ulma.cli import bounds
from ulma.cli.errors import Parser, UsageError, parse_size
from ulma.cli.history import add_history_arguments, check_history
from ulma.cli.watchers import Watchers
from ulma.fleet.options import add_stream_to_argument, streamer_from
from ulma.monitor import session as sessions
from ulma.monitor.eventloop import DEFAULT_BLOCK_MS
from ulma.views.units import CLOCKS

HELP = "run a Python program under ulma and report where its time went"
USAGE = "ulma run [options] (script.py | -m module) [args ...]"


def add_measure_arguments(p: argparse.ArgumentParser) -> None:
    """What the agent measures (`ulma run`, `ulma record`, `ulma attach`)."""
    p.add_argument("--native-calls", action="store_true",
                   help="trace calls into C functions (builtins, extension functions) so they get "
                        "their own rows; on the sys.monitoring engine each call's dispatch is "
                        "measured too (costs more: see bench/)")
    p.add_argument("--cpu-interval", type=int, default=DEFAULT_CPU_INTERVAL_US, metavar="US",
                   help="read the thread's CPU clock at most every US microseconds, to tell CPU "
                        f"from waiting (default: {DEFAULT_CPU_INTERVAL_US}; 0: never; at most "
                        f"{bounds.LIMITS['MAX_CPU_INTERVAL_US']})")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="functions whose qualified name or file matches this shell pattern are not "
                        "traced (no callback fires for a Python function) and get no row: their "
                        "time is in their callers' self time, marked; repeatable")
    p.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="trace only the Python functions whose module (or a package above it), "
                        "qualified name or file matches this shell pattern; nothing fires for the "
                        "others; repeatable")
    p.add_argument("--objects", action="store_true",
                   help="count objects made and destroyed, per type and per function that made "
                        "them (Python 3.13: the ref tracer; 3.11 and 3.12: the object allocator's "
                        "blocks, which miss objects reused from CPython's free lists; costs more: see "
                        "the README)")
    p.add_argument("--objects-types", type=_type_list, metavar="LIST",
                   help="with --objects, only these types (comma-separated shell patterns on the "
                        "type's name or module.name, as list,dict,MyClass); implies --objects")


def _type_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"a comma-separated list of type names, not {text!r}")
    return names


def objects_wanted(opts: argparse.Namespace) -> tuple[str, ...] | None:
    """--objects and --objects-types as the agent takes them; None: off."""
    if not opts.objects and opts.objects_types is None:
        return None
    return opts.objects_types or ()


def add_loop_argument(p: argparse.ArgumentParser, default: float | None = DEFAULT_BLOCK_MS) -> None:
    """asyncio's loop held too long (`ulma run`, `ulma attach`; `ulma report` with no default: the
    trace's; see ulma.monitor.eventloop)."""
    said = "the run's --loop-block" if default is None else f"{default:g}"
    p.add_argument("--loop-block", type=float, default=default, metavar="MS",
                   help="asyncio: flag a callback or task step that holds the event loop longer than "
                        f"MS milliseconds, with its stack (default: {said}; 0: never)")


def add_stream_arguments(p: argparse.ArgumentParser) -> None:
    """Live streams for other tools (`ulma run`, `ulma attach`; see ulma.monitor.streams)."""
    p.add_argument("--log", metavar="FILE",
                   help="write every event to FILE while the program runs, in the format of "
                        "`ulma export --format text` (flushed at least every 100 ms)")
    p.add_argument("--jsonl", metavar="FILE",
                   help="write one JSON object per line to FILE twice a second while the program "
                        "runs (the monitor's health, every function's figures), and a last one at "
                        "the end")


def check_streams(opts: argparse.Namespace, *others: str | None) -> None:
    """--log and --jsonl refused before anything runs: a path that cannot be written, or
    one that another output also names."""
    named = [p for p in others if p]
    for path in (opts.log, opts.jsonl):
        if path:
            check_output(path)
            if path in named:
                raise UsageError(f"{path} is named by two outputs: give each its own file")
            named.append(path)


def add_dial_arguments(p: argparse.ArgumentParser) -> None:
    """The dial: overhead against detail (ulma.monitor.dial)."""
    p.add_argument("--budget", type=float, default=None, metavar="PCT",
                   help="keep ulma's estimated overhead under PCT %% of the plain run time by "
                        "switching off the functions whose events cost most for the time they show "
                        "(and on again when the program's shape changes); the report lists them")
    p.add_argument("--burst", type=burst_value, default=None, metavar="ON_MS:PERIOD_MS",
                   help="trace every function for ON_MS out of every PERIOD_MS only; the counts are "
                        "marked sampled, with estimates scaled to the whole run beside them")
    p.add_argument("--refresh", type=int, default=None, metavar="MS",
                   help="how often the live view redraws and the dial judges the overhead "
                        f"(default: the view its own, the dial {round(sessions.DIAL_SECONDS * 1000)} ms)")


def burst_value(text: str) -> tuple[int, int]:
    """--burst ON_MS:PERIOD_MS, 1 <= ON_MS < PERIOD_MS <= 60000."""
    on, sep, period = text.partition(":")
    try:
        a, b = int(on), int(period)
    except ValueError:
        a = b = 0
    if not sep or not 1 <= a < b <= 60_000:
        raise argparse.ArgumentTypeError(
            f"must be ON_MS:PERIOD_MS with 1 <= ON_MS < PERIOD_MS <= 60000, not {text!r}")
    return a, b


def add_ring_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ring-size", type=parse_size, default=sessions.DEFAULT_RING_BYTES,
                   metavar="SIZE", help="bytes of event ring per thread, rounded down to a power of "
                                        f"two (default: {bounds.fmt_size(sessions.DEFAULT_RING_BYTES)}; "
                                        f"{bounds.fmt_size(bounds.MIN_RING_BYTES)} to "
                                        f"{bounds.fmt_size(bounds.MAX_RING_BYTES)})")


def add_limit_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=30, metavar="N",
                   help="rows in the report (default: 30; 0: all)")


def add_clock_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clock", choices=CLOCKS, default="wall",
                   help="what the report's time columns count and sort by: wall time, or CPU "
                        "time only (functions that used none are left out) (default: wall)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    p.add_argument("-o", "--output", metavar="TRACE",
                   help="also keep the whole event stream in the trace file TRACE (see `ulma report`)")
    p.add_argument("--engine", default="auto", choices=("auto", "monitoring", "pep523"),
                   help="how calls are seen: sys.monitoring (3.12+) or a PEP 523 frame "
                        "evaluator; auto picks the cheaper safe one (default: auto; "
                        f"here: {resolve_engine('auto')}; available: {', '.join(ENGINES)})")
    add_ring_argument(p)
    p.add_argument("--max-threads", type=int, default=sessions.DEFAULT_MAX_THREADS,
                   metavar="N", help="threads traced at once; a thread that ended gives its ring to "
                                     f"the next (default: {sessions.DEFAULT_MAX_THREADS}, at most "
                                     f"{bounds.LIMITS['MAX_THREADS']})")
    add_limit_argument(p)
    p.add_argument("--no-report", action="store_true", help="print no report at the end")
    p.add_argument("--no-children", action="store_true",
                   help="do not follow the program's child processes (by default each forked or "
                        "exec'd Python child -- multiprocessing's workers, subprocesses running "
                        "Python -- is profiled too: the report has a row per process and adds "
                        "the same function up across them)")
    add_stream_arguments(p)
    add_stream_to_argument(p)
    add_measure_arguments(p)
    add_loop_argument(p)
    add_clock_argument(p)
    p.add_argument("--empty-hooks", action="store_true",
                   help="benchmarking: install the engine with hooks that record nothing")
    p.add_argument("--recording-floor", action="store_true",
                   help="benchmarking: hooks that only read the clock and store 16 bytes per event")
    p.add_argument("--self-profile", metavar="TRACE",
                   help="also profile ulma's monitor itself, into the trace file TRACE (its Python "
                        "functions and its phases: drain, snapshot, render, trace writing, ...; "
                        "read it with `ulma report TRACE`)")
    p.add_argument("--wait-attach", action="store_true",
                   help="run the program with an idle agent (no hooks, no cost) and no monitor: "
                        "connect later with `ulma attach PID`")
    # tests: fewer function ids, to reach the overflow row without 2**24 functions
    p.add_argument("--id-limit", type=int, default=0, help=argparse.SUPPRESS)
    # tests: a ring below --ring-size's minimum, to force drops
    p.add_argument("--test-ring-size", type=parse_size, help=argparse.SUPPRESS)
    p.add_argument("-m", dest="module", metavar="MODULE", help="run a library module as a script")
    p.add_argument("program", nargs="?", metavar="script.py", help="the script to run")
    p.add_argument("args", nargs="*", help="arguments for the program")


def valued_options(parser: argparse.ArgumentParser) -> set[str]:
    """The parser's options that take a value (the token after one is its own)."""
    return {s for a in parser._actions for s in a.option_strings if a.nargs != 0}


def split_argv(argv: list[str], valued: set[str]) -> tuple[list[str], list[str]]:
    """Splits `ulma run` options (`valued`: those that take a value) from the
    program and its arguments, which are passed on untouched even when they
    look like ulma's options."""
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            return argv[:i], argv[i + 1:]
        if tok == "-m":
            return argv[:i + 2], argv[i + 2:]
        if tok.startswith("-m") and len(tok) > 2:
            return [*argv[:i], "-m", tok[2:]], argv[i + 1:]
        if not tok.startswith("-") or tok == "-":
            return argv[:i], argv[i:]
        if tok in valued:
            i += 2
            continue
        i += 1
    return argv, []


def target_from(opts: argparse.Namespace, rest: list[str]) -> sessions.Target:
    if opts.module:
        return sessions.Target("module", opts.module, tuple(rest))
    if not rest:
        raise UsageError("no program to run: give a script or -m module")
    script, *args = rest
    if not os.path.exists(script):
        raise UsageError(f"no such file: {script}")
    if os.path.isdir(script):
        raise UsageError(f"{script} is a directory; give a script or -m module")
    if sessions.is_native(script):  # a program built with ulma's runtime (ulma/ulma_runtime.c)
        return sessions.Target("native", os.path.abspath(script), tuple(args))
    return sessions.Target("script", script, tuple(args))


def add_live_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                   help="show the live full-screen view while the program runs (default: when "
                        "stdin, stdout and stderr are terminals); the program's output is kept "
                        "aside and printed when the view closes, its stdin is /dev/null")
    p.add_argument("--live-exit", action="store_true",
                   help="close the live view by itself when the program ends (default: it stays "
                        "until you press q)")
    p.add_argument("--step", action="store_true",
                   help="start in single-step mode: the program stops at its first call (implies "
                        "--live; keys n, N, c, q)")
    p.add_argument("--output-pane", action="store_true",
                   help="show the program's output in a pane of the live view (it is printed "
                        "after the view closes as well)")


def add_web_argument(p: argparse.ArgumentParser) -> None:
    """The live view in a browser (`ulma run`, `ulma attach`; see ulma.web)."""
    p.add_argument("--web", action="store_true",
                   help="serve a live view of the program to a browser on 127.0.0.1 (a random port, "
                        "with a random token in the address printed on stderr; opened when there is "
                        "a display and ULMA_NO_BROWSER is not set); the report follows at the end")


def check_web(opts: argparse.Namespace) -> None:
    """--web serves the view instead of drawing it on the terminal: not with --live or --step
    (single-step is driven from the terminal view)."""
    if not opts.web:
        return
    if getattr(opts, "step", False):
        raise UsageError("--web and --step cannot go together: single-step is driven from the terminal view")
    if opts.live:
        raise UsageError("--web and --live cannot go together: the view is in the browser or on the terminal")
    opts.live = False


def choose_live(opts: argparse.Namespace) -> bool:
    """--live/--no-live, else live when the terminal is ours on all three streams."""
    if getattr(opts, "step", False) and opts.live is None:
        opts.live = True  # single-step is driven from the live view
    if opts.live is None:
        return all(s is not None and s.isatty() for s in (sys.stdin, sys.stdout, sys.stderr))
    if opts.live and not all(s is not None and s.isatty() for s in (sys.stdin, sys.stderr)):
        raise UsageError("--live needs a terminal on stdin and stderr (the view reads keys and draws there)")
    return bool(opts.live)


def parse(argv: list[str], prog: str = "ulma run", usage: str = USAGE,
          description: str = HELP, *, live: bool = False) -> tuple[argparse.Namespace, list[str]]:
    """`live`: offer the live view's options (`ulma run` does)."""
    parser = Parser(prog=prog, usage=usage, description=description)
    add_arguments(parser)
    add_dial_arguments(parser)
    if live:
        add_live_arguments(parser)
        add_web_argument(parser)
        argv = add_history_arguments(parser, argv)  # --history [DSN] (ulma.cli.history)
    mine, rest = split_argv(argv, valued_options(parser))
    opts = parser.parse(mine)
    if opts.program is not None:  # only after `--`
        rest = [opts.program, *opts.args, *rest]
    if live:
        check_web(opts)
        check_history(opts)
    opts.streamer = streamer_from(opts)  # --to: checked before anything runs
    opts.live = live and choose_live(opts)
    return opts, rest


def start(opts: argparse.Namespace, rest: list[str]) -> sessions.RunResult:
    """Checks the options and runs the program under ulma."""
    try:
        engine = resolve_engine(opts.engine)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    target = target_from(opts, rest)
    if target.kind == "native":  # its runtime reads no options: the ones it would ignore are refused
        python_only = [flag for flag, given in (
            ("--only", opts.only), ("--exclude", opts.exclude), ("--budget", opts.budget),
            ("--burst", opts.burst), ("--native-calls", opts.native_calls),
            ("--objects", opts.objects or opts.objects_types is not None),
            ("--step", getattr(opts, "step", False)), ("--engine", opts.engine != "auto"),
            ("--empty-hooks", opts.empty_hooks), ("--recording-floor", opts.recording_floor)) if given]
        if python_only:
            raise UsageError(f"{python_only[0]} applies to Python programs; {target.name} is a native "
                             "program")
    if opts.json:  # refused now rather than after the program ran
        check_output(opts.json)
    check_streams(opts, opts.json, opts.output)
    options = sessions.Options(
        engine=engine, ring_bytes=opts.test_ring_size or opts.ring_size, max_threads=opts.max_threads,
        empty_hooks=opts.empty_hooks, recording_floor=opts.recording_floor,
        trace_path=opts.output, native_calls=opts.native_calls,
        cpu_interval_us=opts.cpu_interval, exclude=tuple(opts.exclude), id_limit=opts.id_limit,
        only=tuple(opts.only), log_path=opts.log, jsonl_path=opts.jsonl, budget=opts.budget or 0.0,
        dial_seconds=opts.refresh / 1000 if opts.refresh else sessions.DIAL_SECONDS, burst=opts.burst,
        children=not opts.no_children, loop_block_ms=opts.loop_block, objects=objects_wanted(opts))
    if opts.burst and opts.budget:
        raise UsageError("--burst and --budget cannot go together: both switch functions off and on")
    watchers = Watchers(opts)  # --to, --history, --push-pprof: around whichever drain
    if opts.live:
        return start_live(target, options, opts, watchers)
    if getattr(opts, "web", False):
        from ulma.web.cli import run_web  # starlette and uvicorn only when the page is served

        return run_web(target, options, title_of(target), opts.refresh, watchers)
    if watchers:
        from ulma.cli.watchers import run as run_watched

        return run_watched(target, options, watchers)
    return sessions.run(target, options)


def title_of(target: sessions.Target) -> str:
    """The program as the user named it."""
    return " ".join([target.name if target.kind == "script" else f"-m {target.name}", *target.args])


def check_output(path: str) -> None:
    """A file that could not be written (--json) is refused before anything runs."""
    from ulma.format import files

    try:
        files.check(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}", 1) from None


def start_live(target: sessions.Target, options: sessions.Options, opts: argparse.Namespace,
               watchers: Watchers) -> sessions.RunResult:
    # Textual is imported only when the view is shown.
    from ulma.cli.live import run_live
    from ulma.views.live import ViewSettings

    title = title_of(target)
    settings = ViewSettings(title=title, exit_when_done=opts.live_exit, clock=opts.clock, step=opts.step)
    if opts.refresh:
        settings.refresh_seconds = opts.refresh / 1000
    return run_live(target, options, settings, watchers, output_pane=opts.output_pane)


def exit_code(result: sessions.RunResult) -> int:
    """The program's exit code (128+N if a signal killed it, as shells say);
    1 if the program succeeded but ulma could not keep what it recorded."""
    code = result.returncode
    for line in result.streams_said:  # --log, --jsonl
        sys.stderr.write(f"ulma: {line}\n")
    if any(line.startswith("error") for line in result.streams_said):
        code = code or 1
    if code < 0:
        return 128 - code
    if result.trace_error:
        sys.stderr.write(f"ulma: error: {result.trace_error}\n")
        return code or 1
    return code


def run_idle(target: sessions.Target) -> int:
    """--wait-attach: the program runs with an idle agent; we only wait for it."""
    import subprocess

    if target.kind == "native":  # its runtime listens by itself (ulma/ulma_runtime.c)
        proc = subprocess.Popen([target.name, *target.args], env=dict(os.environ, ULMA_LISTEN="1"))
    else:
        program = [target.name] if target.kind == "script" else ["-m", target.name]
        proc = subprocess.Popen([sys.executable, "-m", "ulma.agent", *program, *target.args])
    sys.stderr.write(f"ulma: process {proc.pid} carries an idle agent: `ulma attach {proc.pid}`\n")
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the program's to handle
    try:
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, old)
    return 128 - code if code < 0 else code


def not_started(opts: argparse.Namespace, rest: list[str], result: sessions.RunResult) -> int:
    """The exit code when the program never started its agent: a Python program's agent said
    why, in one line; a native program's has no agent to say it, so we do."""
    if rest and not opts.module and sessions.is_native(rest[0]):
        sys.stderr.write(f"ulma: {rest[0]} recorded nothing: it was not built with ulma's runtime "
                         "(ulma/ulma_runtime.c, see `python -m ulma.include`)\n")
        return 1
    return result.returncode or 1


def execute(argv: list[str]) -> int:
    opts, rest = parse(argv, live=True)
    if opts.wait_attach:
        return run_idle(target_from(opts, rest))
    if opts.self_profile:
        from ulma.monitor.selfprofile import SelfProfile, SelfProfileError

        check_output(opts.self_profile)
        try:
            with SelfProfile(opts.self_profile) as me:
                result = start(opts, rest)
        except SelfProfileError as exc:
            raise UsageError(str(exc), 1) from None
        if me.error:
            sys.stderr.write(f"ulma: error: {me.error}\n")
    else:
        result = start(opts, rest)
    if not result.started:
        return not_started(opts, rest, result)
    # the report's modules (rich) are loaded only when there is a report to make
    if opts.json:
        from ulma.exporters import json_report

        try:
            json_report.write(result.profile, opts.json)
        except OSError as exc:
            sys.stderr.write(f"ulma: error: cannot write {opts.json}: {exc.strerror}\n")
            return result.returncode or 1
    if not opts.no_report:
        from ulma.views.report import print_report

        print_report(result.profile, sys.stderr, limit=opts.limit, clock=opts.clock)
    return exit_code(result)
