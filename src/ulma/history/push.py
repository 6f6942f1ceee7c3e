"""``--push-pprof URL``: the run's figures pushed as pprof profiles while it runs (Grafana
Pyroscope's ``/ingest``, an OpenTelemetry collector's pprof receiver, or any HTTP endpoint that
takes a gzipped ``profile.proto`` as the body of a POST).

Every ``interval`` seconds, and once more at the end with the final totals, one profile of what
happened since the previous push: built from the monitor's live snapshot, which holds
per-function totals and no call tree, so each sample is one function on its own (a one-frame
stack) with two values -- ``wall``, its self time in ns over the interval, and ``calls`` (a
correction of a live estimate of a call still open can make ``wall`` negative).  (The
whole stacks are in ``ulma export --format pprof`` of a trace.)  The query string gets ``from``
and ``until`` (Unix seconds) when the URL does not have them, as Pyroscope wants.

A receiver that cannot be reached or refuses is one line on stderr, and no more pushes; the run
and its report go on.
"""

from __future__ import annotations

import gzip
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ulma import __version__
from ulma.exporters import pprof as pp
from ulma.exporters import protobuf as pb
from ulma.history.periodic import Periodic
from ulma.monitor.profile import Profile

Key = tuple[str, str, int]
TIMEOUT = 5.0


def encode(figures: dict[Key, tuple[int, int]], start_ns: int, duration_ns: int, about: str) -> bytes:
    """A gzipped profile.proto: one sample per function, values (self wall ns, calls)."""
    strings: dict[str, int] = {"": 0}

    def s(text: str) -> int:
        return strings.setdefault(text, len(strings))

    def value_type(kind: str, unit: str) -> bytes:
        return pb.integer(pp.VT_TYPE, s(kind)) + pb.integer(pp.VT_UNIT, s(unit))

    parts = [pb.nested(pp.P_SAMPLE_TYPE, value_type("wall", "nanoseconds")),
             pb.nested(pp.P_SAMPLE_TYPE, value_type("calls", "count"))]
    body = [pb.nested(pp.P_MAPPING, pb.integer(pp.M_ID, 1) + pb.integer(pp.M_FILENAME, s("python"))
                      + pb.integer(pp.M_HAS_FUNCTIONS, 1) + pb.integer(pp.M_HAS_FILENAMES, 1)
                      + pb.integer(pp.M_HAS_LINES, 1))]
    for loc, ((name, file, line), (wall, calls)) in enumerate(sorted(figures.items()), start=1):
        values = pb.varint(wall) + pb.varint(calls)
        parts.append(pb.nested(pp.P_SAMPLE, pb.packed(pp.S_LOCATION, [loc]) + pb.nested(pp.S_VALUE, values)))
        body.append(pb.nested(pp.P_LOCATION, pb.integer(pp.L_ID, loc) + pb.integer(pp.L_MAPPING, 1)
                              + pb.nested(pp.L_LINE, pb.integer(pp.LINE_FUNCTION, loc)
                                          + pb.integer(pp.LINE_LINE, line))))
        body.append(pb.nested(pp.P_FUNCTION, pb.integer(pp.F_ID, loc) + pb.integer(pp.F_NAME, s(name))
                              + pb.integer(pp.F_FILENAME, s(file)) + pb.integer(pp.F_START_LINE, line)))
    tail = [pb.integer(pp.P_TIME, start_ns), pb.integer(pp.P_DURATION, duration_ns),
            pb.nested(pp.P_PERIOD_TYPE, value_type("wall", "nanoseconds")), pb.integer(pp.P_PERIOD, 1),
            pb.packed(pp.P_COMMENT, [s(f"ulma {__version__} live push"), s(about)]),
            pb.integer(pp.P_DEFAULT_TYPE, s("wall"))]
    strings_part = [pb.string(pp.P_STRINGS, text) for text in strings]  # in index order, last
    return gzip.compress(b"".join(parts + body + tail + strings_part), compresslevel=6, mtime=0)


def check_url(url: str) -> str | None:
    """Why `url` cannot be pushed to, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        return f"--push-pprof {url!r} is not a URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--push-pprof {url!r} is not an http:// or https:// URL"
    return None


class PprofPusher(Periodic):
    def __init__(self, url: str, interval: float, command: str) -> None:
        super().__init__("ulma-push")
        self.url = url
        self.interval = interval
        self.command = command
        self.pushed = 0
        self._prev: dict[Key, tuple[int, int]] = {}
        self._prev_ns = time.time_ns()

    def start(self, snapshot: Callable[[], Profile]) -> None:
        self._prev_ns = time.time_ns()
        self._start(self._loop, snapshot)

    def _loop(self, snapshot: Callable[[], Profile]) -> None:
        while not self._stop.wait(self.interval):
            try:
                profile = snapshot()
            except Exception:  # the session went away: the final push comes in close()
                return
            if not self._push(profile):
                return

    def _push(self, profile: Profile) -> bool:
        if self.error is not None:
            return False
        now = time.time_ns()
        current: dict[Key, tuple[int, int]] = {}
        for f in profile.functions:
            key = (f.name, f.file, f.line)
            wall, calls = current.get(key, (0, 0))
            current[key] = (wall + f.self_ns, calls + f.calls)
        delta = {}
        for key, (wall, calls) in current.items():
            w0, c0 = self._prev.get(key, (0, 0))
            if wall != w0 or calls != c0:
                # (signed: a live snapshot counts a call still open up to now, which may be past its
                # return not yet drained; the next push corrects it, so the pushes add up to the
                # run's totals exactly -- pprof's values are int64)
                delta[key] = (wall - w0, calls - c0)
        data = encode(delta, self._prev_ns, now - self._prev_ns, self.command)
        parts = urlsplit(self.url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        names = {k for k, _ in query}
        query += [(k, str(v)) for k, v in (("from", self._prev_ns // 10**9), ("until", now // 10**9))
                  if k not in names]
        url = urlunsplit(parts._replace(query=urlencode(query)))
        request = urllib.request.Request(url, data=data, method="POST", headers={
            "Content-Type": "application/octet-stream", "User-Agent": f"ulma/{__version__}"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
                answer.read()
        except urllib.error.HTTPError as exc:
            return self._fail(f"{self.url} answered {exc.code} {exc.reason}")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return self._fail(f"cannot reach {self.url}: {getattr(reason, 'strerror', None) or reason}")
        self.pushed += 1
        self._prev, self._prev_ns = current, now
        return True

    def _fail(self, why: str) -> bool:
        self._said(f"push failed: {why}; no more pushes, the run goes on")
        return False

    def close(self, final: Profile | None) -> str | None:
        self.stop()
        if final is not None and self.error is None:
            self._push(final)
        if self.error is not None:
            return None
        return f"pushed {self.pushed} pprof profiles to {self.url}"
