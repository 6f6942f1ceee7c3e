"""``ulma run --web`` and ``ulma attach PID --web``: the live view in a browser.

The page does not own the terminal (unlike ``--live``), so the program keeps
its own stdin, stdout and stderr, and Ctrl-C reaches it as without ulma.  The
address, with its token, is printed on stderr and opened in a browser when
there is a display and ULMA_NO_BROWSER is not set.  Closing the page changes
nothing: ulma drains until the program ends (or, attached, until it detaches),
then the server stops and the report follows as without it."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

from ulma.cli.watchers import Watchers
from ulma.monitor import session as sessions
from ulma.monitor.attach import Attachment
from ulma.monitor.live import LiveAttachment, LiveRun, LiveSource
from ulma.monitor.terminal import Forwarding
from ulma.web.server import WebServer

NO_BROWSER = "ULMA_NO_BROWSER"  # set (to anything but empty): never open a browser
WAIT_SECONDS = 0.1


def open_browser(url: str) -> None:
    """Opens the page, only where a browser can show it: a display, and not asked not to
    (tests set ULMA_NO_BROWSER; without a display `webbrowser` might start a text browser
    on the terminal the program writes to)."""
    if os.environ.get(NO_BROWSER) or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return
    import webbrowser

    # a browser that takes its time to start must not hold the monitor up
    threading.Thread(target=webbrowser.open, args=(url,), name="ulma-browser", daemon=True).start()


def serve(source: LiveSource, title: str, refresh_ms: int | None,
          until: Callable[[], bool]) -> None:
    """Serves the page over `source` until `until()` says stop (polled).  A server that cannot
    start is said in a line: the program runs on, profiled, and the report follows."""
    try:
        server = WebServer(source, title, refresh_ms / 1000 if refresh_ms else None).start()
    except Exception as exc:
        sys.stderr.write(f"ulma: the web view could not start ({type(exc).__name__}: {exc}); "
                         "the report follows\n")
        while not until():
            source.done.wait(WAIT_SECONDS)
        return
    sys.stderr.write(f"ulma: web view at {server.url}\n")
    sys.stderr.flush()
    open_browser(server.url)
    try:
        while not until():
            source.done.wait(WAIT_SECONDS)
        server.wait_final(timeout=2.0)
    finally:
        server.stop()
    if server.error is not None:
        sys.stderr.write(f"ulma: the web view failed ({type(server.error).__name__}: {server.error}); "
                         "the report follows\n")


def run_web(target: sessions.Target, options: sessions.Options, title: str,
            refresh_ms: int | None, watchers: Watchers) -> sessions.RunResult:
    """`watchers` (--to, --history, --push-pprof) are started before the drain thread and
    finished with the run's final figures."""
    running = sessions.Run(target, options)
    watchers.start(running.session, running._stream_snapshot, running.proc.pid, running.command)
    with Forwarding().to(running.proc):
        live = LiveRun(running).start()
        serve(live, title, refresh_ms, live.done.is_set)
        live.done.wait()
    watchers.stop()
    result = live.finish()
    watchers.finish(result.profile, result.returncode, result.started)
    return result


def watch_web(att: Attachment, pid: int, duration: float | None, stop: threading.Event,
              refresh_ms: int | None) -> str:
    """Attached: the page until the program ends, `duration` passes or `stop` is set
    (Ctrl-C, SIGTERM, SIGHUP); then the drain stops (the caller detaches)."""
    live = LiveAttachment(att, duration).start()
    serve(live, f"attached to process {pid}", refresh_ms, lambda: live.done.is_set() or stop.is_set())
    live.stop()
    if live.error is not None:
        sys.stderr.write(f"ulma: error: the monitor stopped draining: {live.error}\n")
    return live.why or "stopped"
