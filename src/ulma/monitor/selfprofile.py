"""`ulma run --self-profile TRACE`: the monitor profiled while it runs, into a trace of its own.

The monitor carries an idle agent (ulma.agent.listener) and starts `ulma attach <its own pid>
-o TRACE` as a child in its own session: the attach connects through the agent's socket (no
ptrace: a child may not trace its parent), and once it says it is attached the program starts.
At the end the child is asked to detach (SIGINT), as a user's Ctrl-C does, and its trace is
complete.  The monitor's Python functions are traced as any program's; its C core's phases
(drain, snapshot, aggregate, replay, text lines) and its Python ones (render, trace write,
compress) are native scopes (ulma.phases, _core's ULMA_CORE_SCOPE) in the same stacks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from types import TracebackType

ATTACH_WAIT_S = 30.0


class SelfProfileError(Exception):
    """The monitor could not be profiled: the message says why, in one line."""


class SelfProfile:
    """A context: attached to this process on entry, detached on exit."""

    def __init__(self, trace_path: str) -> None:
        self.trace_path = trace_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (open until __exit__: the child's stderr)
        self.error: str | None = None  # what went wrong at the end (the trace may be short)

    def _said(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def __enter__(self) -> SelfProfile:
        from ulma.agent import listener

        if listener.install() is None:
            raise SelfProfileError("--self-profile: the monitor cannot listen for its own attach")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ulma", "attach", str(os.getpid()), "-o", self.trace_path, "--no-report"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + ATTACH_WAIT_S
        while "attached to process" not in self._said():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                said = self._said().strip().splitlines()
                self._stop()
                raise SelfProfileError(f"--self-profile: {said[-1] if said else 'the attach did not start'}")
            time.sleep(0.01)
        return self

    def _stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop()
        if self.proc is not None and self.proc.returncode != 0:
            said = [line for line in self._said().splitlines() if line.strip()]
            self.error = f"--self-profile: {said[-1] if said else f'exit code {self.proc.returncode}'}"
        self.log.close()
