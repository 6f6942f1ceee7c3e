"""``ulma``: the command-line entry point.  Each subcommand is a module with
``HELP`` and ``execute(argv) -> exit code``; errors end here as one line."""

from __future__ import annotations

import importlib
import os
import sys

from ulma import __version__

# argparse (ulma.cli.errors) and the rest are imported in main(), after
# `ulma run` has started the program's interpreter (ulma.monitor.prestart)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import NoReturn

# imported when used: `ulma run` starts without loading what only the others need
COMMANDS = ("run", "record", "report", "export", "attach", "collect", "history")


def _command(name: str) -> ModuleType:
    return importlib.import_module(f"ulma.cli.{name}")


def usage() -> str:
    lines = [f"ulma {__version__}: a live, low-overhead tracing profiler for Python", "",
             "usage: ulma <command> [options]", "", "commands:"]
    lines += [f"  {name:<8} {_command(name).HELP}" for name in COMMANDS]
    lines += ["", "`ulma <command> --help` tells more."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if argv is None and args[:1] == ["run"]:
        from ulma.monitor import prestart

        if prestart.wanted(args[1:]):
            prestart.start(args[1:])
        try:
            return _main(args)
        finally:
            prestart.discard()
    return _main(args)


def entry() -> NoReturn:
    """The `ulma` command (its console script, `python -m ulma`): main(),
    then out without the interpreter's teardown of the monitor's objects
    (10-15 ms at the end of every run, the last thing its user waits for).
    By then everything is written and closed; main() itself returns, for
    whoever calls it in a process of their own.  What would still run at a
    normal exit runs: the atexit functions (ulma registers none; a wrapper
    that runs `python -m ulma` in its process may); and while a thread that
    the interpreter would wait for still runs, the exit is the normal one."""
    code = main()
    threading = sys.modules.get("threading")
    if threading is not None and any(t.is_alive() and not t.daemon and t is not threading.main_thread()
                                     for t in threading.enumerate()):
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what could be said was said
            code = code or 1
    os._exit(code)


def _main(args: list[str]) -> int:
    from ulma.cli.errors import UsageError
    from ulma.monitor import output

    if not args:
        sys.stderr.write("ulma: error: no command given (try `ulma run script.py` or `ulma --help`)\n")
        return 2
    if args[0] in ("-h", "--help"):
        print(usage())
        return 0
    if args[0] == "--version":
        print(f"ulma {__version__}")
        return 0
    if args[0] not in COMMANDS:
        sys.stderr.write(f"ulma: error: unknown command {args[0]!r} (try `ulma --help`)\n")
        return 2
    # the output of a run whose ulma was killed or lost its terminal first
    output.report_leftovers(sys.stderr)
    try:
        code: int = _command(args[0]).execute(args[1:])
        return code
    except UsageError as exc:
        sys.stderr.write(f"ulma: error: {exc}\n")
        return exc.code
    except KeyboardInterrupt:
        sys.stderr.write("ulma: interrupted\n")
        return 130
    except OSError as exc:
        sys.stderr.write(f"ulma: error: {exc.strerror or exc}\n")
        return 1
