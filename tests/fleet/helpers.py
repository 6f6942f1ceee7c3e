"""Starting `ulma collect` and reading what it and the runs said, for the fleet tests."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.conftest import subprocess_env, ulma_command
from ulma.format import runinfo, trace

TOKEN = "fleet-test-token-4f1c"


def env(token: str | None = TOKEN, **extra: str) -> dict[str, str]:
    out = subprocess_env(extra)
    out.pop("ULMA_TOKEN", None)
    if token is not None:
        out["ULMA_TOKEN"] = token
    return out


class Collector:
    """`ulma collect` in a process of its own (optionally inside a network namespace)."""

    def __init__(self, tmp: Path, listen: str = "127.0.0.1:0", *, prefix: Sequence[str] = (),
                 token: str = TOKEN, events: bool = True, extra: Sequence[str] = ()) -> None:
        self.json = tmp / "collector.json"
        self.trace = tmp / "merged"
        cmd = [*prefix, *ulma_command(["collect", "--listen", listen, "--json", str(self.json), *extra])]
        if events:
            cmd += ["-o", str(self.trace)]
        self.proc = subprocess.Popen(cmd, env=env(token), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, start_new_session=True, text=True)
        assert self.proc.stderr is not None
        self.lines: list[str] = []
        deadline = time.monotonic() + 30
        fd, rest = self.proc.stderr.fileno(), b""
        while time.monotonic() < deadline:  # read from the pipe itself: no line left in a buffer
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                data = os.read(fd, 1 << 16)
                if not data:
                    break
                *whole, rest = (rest + data).split(b"\n")
                for raw in whole:
                    line = raw.decode() + "\n"
                    self.lines.append(line)
                    m = re.search(r"listening on (\S+):(\d+)", line)
                    if m:
                        self.address = f"{m.group(1)}:{m.group(2)}"
                if any("listening on" in line for line in self.lines):
                    if rest:
                        self.lines.append(rest.decode())
                    return
        self.proc.kill()
        raise AssertionError(f"the collector did not start: {''.join(self.lines)}")

    def stop(self) -> tuple[str, str, dict[str, Any]]:
        """SIGINT, as a user stops it; (stdout, stderr, its --json)."""
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, f"collector exit {self.proc.returncode}\n{err}"
        err = "".join(self.lines) + err
        return out, err, json.loads(self.json.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)


def processes(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p | {"host": h["host"]} for h in doc["hosts"] for p in h["processes"]]


def calls(functions: list[dict[str, Any]]) -> dict[tuple[str, str, int], int]:
    return {(f["name"], f["file"], f["line"]): f["calls"] for f in functions}


def trace_events(path: Path) -> int:
    """Records in a trace, as its own reader counts them."""
    return sum(runinfo.scan(trace.TraceReader(str(path))).events.values())


def trace_pid(path: Path) -> int:
    """The program's pid, as its own trace says."""
    return runinfo.scan(trace.TraceReader(str(path))).pid


def member(merged: Path, pid: int) -> Path:
    index = json.loads((merged / "fleet.json").read_text())
    (m,) = [m for m in index["members"] if m["pid"] == pid]
    return merged / str(m["file"])


def ulma_lines(stderr: str) -> list[str]:
    """ulma's own lines on stderr (the report's rows are indented or a table)."""
    return [line for line in stderr.splitlines() if line.startswith("ulma:")]


def run(args: Sequence[str], *, prefix: Sequence[str] = (), token: str | None = TOKEN, cwd: Path,
        timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, *ulma_command(["run", "--no-live", *args])], env=env(token, **extra),
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
