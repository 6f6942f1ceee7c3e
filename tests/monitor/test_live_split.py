"""Live snapshots split time while it accrues: a function blocked right now
shows as waiting (the monitor reads the thread's CPU time from outside, as no
event comes to bracket the wait yet)."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from ulma.agent import resolve_engine
from ulma.monitor.session import Options, Run, Target

PROGRAM = Path(__file__).resolve().parents[1] / "programs" / "blocked_now.py"


def test_a_function_blocked_right_now_shows_as_waiting_in_a_live_snapshot() -> None:
    run = Run(Target("script", str(PROGRAM), ("3",)), Options(engine=resolve_engine("auto")),
              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    drainer = threading.Thread(target=run.drain_until_exit)
    drainer.start()
    try:
        assert run.proc.stdout is not None
        assert run.proc.stdout.readline() == b"sleeping\n"
        time.sleep(1.0)  # well inside the 3 s sleep
        profile = run.live_profile()
        (sleeper,) = [f for f in profile.functions if f.name == "sleeper"]
        assert sleeper.total_ns >= 0.9e9, sleeper
        assert sleeper.wait_ns >= 0.9 * sleeper.total_ns, sleeper
        (busy,) = [f for f in profile.functions if f.name == "busy"]
        # it computed (its generator's many events make much of it probe overhead): it never blocked
        # (on a loaded machine it may have waited for a CPU: runnable, not blocked)
        blocked = busy.wait_ns if busy.wait_blocked_ns is None else busy.wait_blocked_ns
        assert blocked <= 0.05 * busy.total_ns and busy.cpu_ns > 0, busy
    finally:
        run.proc.terminate()
        drainer.join(30)
        run.finish()
