"""The collector's merged trace (``ulma collect -o DIR``) and its Chrome export.

A merged trace is a directory: one ordinary trace per streamed session
(``HOST-PID.ulma``, readable by every ``ulma`` command on its own, its times on
its host's clock) and ``fleet.json``, the index: each member's host, pid and
clock offset against the collector (with its drift and its error bound).
``ulma export --format chrome DIR`` puts them all on the collector's time line:
one process track per host and process, time 0 the earliest session's start.
"""

from __future__ import annotations

import io
import json
import os
import re
from typing import Any, BinaryIO

from ulma.exporters.chrome import _COMPACT, ChromeExporter
from ulma.format import files, runinfo, stacks, trace

INDEX = "fleet.json"
INDEX_VERSION = 1


def is_fleet(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, INDEX))


class MemberWriter:
    """One session's trace, as its records arrive."""

    def __init__(self, path: str, meta: dict[str, Any]) -> None:
        self.path = path
        self.writer = trace.TraceWriter(path, meta)
        self.scale = float(meta.get("ns_per_tick") or 1.0)
        self.count = 0  # records written

    def symbols(self, packed: bytes) -> None:
        if packed:
            self.writer.chunk(trace.SYMBOLS, packed)

    def events(self, thread: int, data: bytes, scale: float) -> None:
        self.writer.events(thread, data)
        self.count += len(data) // 16
        if scale > 0:
            self.scale = scale

    def close(self, end: dict[str, Any] | None) -> None:
        self.writer.close(end if end is not None else {"ns_per_tick": self.scale})


class FleetWriter:
    """``-o DIR``: the directory is made at once (it must not exist); the index at the end."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.mkdir(directory, 0o700)
        self.members: dict[tuple[str, int], MemberWriter] = {}

    def member(self, host: str, pid: int, meta: dict[str, Any]) -> MemberWriter:
        name = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', host)[:64]}-{pid}"
        path = os.path.join(self.directory, f"{name}.ulma")
        n = 1
        while os.path.exists(path):
            n += 1
            path = os.path.join(self.directory, f"{name}-{n}.ulma")
        writer = self.members[(host, pid)] = MemberWriter(path, meta)
        return writer

    def close(self, sources: list[Any]) -> None:
        members = []
        for src in sources:
            if src.writer is None:
                continue
            src.writer.close(src.end)
            members.append({"file": os.path.basename(src.writer.path), "host": src.host, "pid": src.pid,
                            "command": src.command, "finished": src.finished, **src.clock.report()})
        index = {"version": INDEX_VERSION, "members": members}
        with files.writing_text(os.path.join(self.directory, INDEX)) as f:
            json.dump(index, f, indent=1)


class _Joined(io.RawIOBase):
    """The shared output, as each member's exporter sees it: a member after the first starts
    with "," where its own file would start with "[" (its events follow the others')."""

    def __init__(self, out: BinaryIO, first: bool) -> None:
        self.out = out
        self.first = first
        self.started = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = bytes(data)
        if not self.started and view:
            self.started = True
            if not self.first and view[:1] == b"[":
                view = b"," + view[1:]
        self.out.write(view)
        return len(data)


class FleetChromeExporter(ChromeExporter):
    """One member's events, its process named after its host; the array closed by the last one."""

    def __init__(self, run: runinfo.Run, out: BinaryIO, host: str, last: bool) -> None:
        super().__init__(run, out)
        self.last = last
        name = {"ph": "M", "name": "process_name", "pid": run.pid, "tid": 0,
                "args": {"name": f"{host}: pid {run.pid} (python {run.meta.get('python', '')})"}}
        self.text.write(",\n" + json.dumps(name, separators=_COMPACT))

    def finish(self) -> None:
        if self.last:
            super().finish()
            return
        self.write_profiles()
        self.text.flush()
        self.text.detach()


def to_collector(member: dict[str, Any], host_ns: int) -> int:
    """A member's time (its host's clock) on the collector's: less its offset, and the drift
    since the offset's reference (fleet.json's offset_ns, ref_ns, drift_ppm; ulma.fleet.clocks)."""
    offset = int(member.get("offset_ns") or 0)  # host minus collector
    drift = float(member.get("drift_ppm") or 0.0)
    ref = member.get("ref_ns")
    if drift and ref is not None:
        offset += round(drift * 1e-6 * (host_ns - offset - int(ref)))
    return host_ns - offset


def export_chrome(directory: str, out_path: str) -> list[str]:
    """Every member on the collector's time line; the warnings (members cut short, ...)."""
    with open(os.path.join(directory, INDEX), encoding="utf-8") as f:
        index = json.load(f)
    members = [m for m in index.get("members", []) if isinstance(m, dict)]
    if not members:
        raise trace.TraceError(f"{directory} holds no streamed events (the sessions sent aggregates only)")
    runs = []
    for m in members:
        reader = trace.TraceReader(os.path.join(directory, str(m["file"])))
        run = runinfo.scan(reader)
        host_start = int(run.meta.get("start_mono_ns", 0))
        start = to_collector(m, host_start)  # the session's start, collector's clock
        drift = float(m.get("drift_ppm") or 0.0)
        if drift:  # the host's ns are (1 + drift) of the collector's: its ticks are that much shorter
            run.ns_per_tick /= 1 + drift * 1e-6
            if run.text_ns_per_tick:
                run.text_ns_per_tick /= 1 + drift * 1e-6
        runs.append((m, reader, run, start))
    origin = min(start for _, _, _, start in runs)
    warnings: list[str] = []
    pids = [run.pid for _, _, run, _ in runs]
    with files.writing(out_path) as out:
        for i, (m, reader, run, start) in enumerate(runs):
            if pids.count(run.pid) > 1:  # the same pid on two hosts: tracks apart
                run.pid = run.pid + (i + 1) * 10_000_000
            # times are ns since start_ticks: moved back so that 0 is the origin for every member
            run.start_ticks -= round((start - origin) / run.ns_per_tick)
            joined = io.BufferedWriter(_Joined(out, i == 0))
            exporter = FleetChromeExporter(run, joined, str(m.get("host")), i == len(runs) - 1)
            exporter.replayed(stacks.replay(reader, run, exporter.REPLAY, exporter.take_frames))
            exporter.finish()
            joined.flush()
            warnings += [f"{m.get('file')}: {w}" for w in run.warnings]
            if m.get("error_ns") is None:
                warnings.append(f"{m.get('file')}: no clock offset was measured: its times are its own")
    return warnings


def export_fleet(directory: str, fmt: str, out_path: str) -> int:
    """`ulma export DIR`: the exit code; errors in one line (UsageError)."""
    import sys

    from ulma.cli.errors import UsageError

    if not is_fleet(directory):
        raise UsageError(f"{directory} is a directory, not a merged trace (it has no {INDEX})", 1)
    if fmt != "chrome":
        raise UsageError(f"a merged trace exports to chrome only; export its members ({directory}/*.ulma) "
                         f"to {fmt} one by one", 1)
    if out_path == "-":
        raise UsageError("a merged trace is exported to a file, not to standard output", 1)
    try:
        warnings = export_chrome(directory, out_path)
    except (trace.TraceError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{directory}: {exc}", 1) from None
    except OSError as exc:
        raise UsageError(f"cannot write {out_path}: {exc.strerror or exc}", 1) from None
    for warning in warnings:
        sys.stderr.write(f"ulma: warning: {warning}\n")
    return 0
