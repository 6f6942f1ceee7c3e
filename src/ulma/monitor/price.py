"""What one event really costs the program: the dial's price (`--budget`, the view's `d`).

The start-up probe calibration (ulma/agent/calibrate.py) times an empty
function with the hooks paused and on, into a private scratch ring: what one
callback adds between two timestamps, for the monitor to take out of the
functions' times.  It is not what the dial saves when it switches a function
off: on 3.12 it read 27-31 ns an event where fib under `ulma run` paid 42-61
(a recursive function with an argument, its events read by the monitor as
they are written), so the dial's estimate read about half the overhead; on
3.11 it read 0.36-1.76x (pausing takes the PEP 523 evaluator away too, which
stays for a function switched off).

This measures that saving directly: a recursive function with an argument is
called traced and left out (by `only`: no callback fires for it, as after the
dial's OFF), in alternating rounds timed in the thread's CPU time, in batches
spread over ~0.4 s (the machine's load moves); the price is the median of the
rounds' differences, per event.  Its events go to a session of the run's ring
size that the monitor drains meanwhile, in a thread, with the run's loop
(Pricing), so the writes race the reads as in the run.  Same engine and
--native-calls as the program; on the same Python with the same _core in a
child process of the monitor (`python -m ulma.monitor.price FD ENGINE
NATIVE_CALLS`, printing one JSON line), off the program's critical path.
Only a dial starts it, so `ulma run` without one pays nothing for it.  Until
it answers (a Python start-up and the rounds: 0.3-2.5 s on a loaded 2-core
machine) the dial prices events at the start-up probe cost.
"""

from __future__ import annotations

import os
import sys
import time

import ulma
from ulma.agent import DEFAULT_CPU_INTERVAL_US

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    import threading

N = 12  # fib(12): 465 calls, 930 events a round (~50 us traced: few rounds preempted)
ROUNDS = 200  # each way (~20 ms of CPU in all) ...
BATCH = 10  # ... in batches, a pause between two, so they sample the machine's load
PAUSE_S = 0.02  # over ~0.4 s, as the program's windows do
TIMEOUT_S = 30.0


def _fib_traced(n: int) -> int:
    return n if n < 2 else _fib_traced(n - 1) + _fib_traced(n - 2)


def _fib_off(n: int) -> int:
    return n if n < 2 else _fib_off(n - 1) + _fib_off(n - 2)


def calls_of(n: int) -> int:
    """How many calls fib(n) makes."""
    a, b = 1, 1  # calls of fib(0), fib(1)
    for _ in range(n - 1):
        a, b = b, a + b + 1
    return b if n else a


def measure(fd: int, engine: str, native_calls: bool, rounds: int = ROUNDS, n: int = N) -> dict[str, float]:
    """This process's price per event (ns): the agent started here on the
    session in `fd` (the monitor drains it meanwhile), only `_fib_traced` traced."""
    from ulma import _core

    # nothing hidden but ulma's agent folder; `only` leaves everything but _fib_traced untraced
    _core.agent_start(fd, engine, 0, os.path.join(os.path.dirname(ulma.__file__), "agent") + os.sep, None, 0,
                      native_calls=native_calls, cpu_interval_us=DEFAULT_CPU_INTERVAL_US,
                      only=[_fib_traced.__qualname__])
    clock = time.thread_time_ns
    diffs: list[int] = []
    offs: list[int] = []
    try:
        _fib_off(n)  # first calls: ids, DISABLE
        _fib_traced(n)
        for i in range(rounds):
            if i and i % BATCH == 0:
                time.sleep(PAUSE_S)
            t0 = clock()
            _fib_off(n)
            t1 = clock()
            _fib_traced(n)
            t2 = clock()
            diffs.append((t2 - t1) - (t1 - t0))
            offs.append(t1 - t0)
    finally:
        _core.agent_stop()
    events = 2 * calls_of(n)
    diffs.sort()
    offs.sort()
    return {"event_ns": max(diffs[len(diffs) // 2] / events, 0.0),
            "q1_ns": diffs[len(diffs) // 4] / events, "q3_ns": diffs[3 * len(diffs) // 4] / events,
            "plain_call_ns": offs[len(offs) // 2] / calls_of(n), "rounds": rounds}


class Pricing:
    """The child measuring the price, polled without blocking; its session is
    made and drained here, in a thread of the monitor, as a run's is."""

    def __init__(self, engine: str, native_calls: bool, ring_bytes: int) -> None:
        import subprocess
        import threading

        from ulma import _core

        self.event_ns: float | None = None
        self.error: str | None = None
        self.at_s: float | None = None  # when it answered, seconds after it started
        self._start = time.monotonic()
        self._proc: subprocess.Popen[str] | None = None
        self._drainer: threading.Thread | None = None
        self._stop = threading.Event()
        self._session: _core.Session | None = None
        fd = os.memfd_create("ulma-price", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            self._session = _core.Session(fd, ring_bytes, 2)
            # the rings' pages in place, as in a run once its ring went round (a first
            # touch costs a page fault every 256 events: 4-15 ns an event, measured)
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
            root = os.path.dirname(os.path.dirname(ulma.__file__))
            env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "ulma.monitor.price", str(fd), engine, "1" if native_calls else "0"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env=env, pass_fds=(fd,))
        except (OSError, RuntimeError, ValueError) as exc:
            self.error = f"cannot start the price measurement: {exc}"
            self._close_session()
            return
        finally:
            os.close(fd)
        drainer = threading.Thread(target=self._drain, name="ulma-price-drain", daemon=True)
        drainer.start()
        self._drainer = drainer

    def _drain(self) -> None:
        """The run's drain loop: again at once while busy, else every ms."""
        session = self._session
        assert session is not None  # made before the thread
        while not self._stop.is_set():
            if session.drain() <= 4096:
                self._stop.wait(0.001)

    def _close_session(self) -> None:
        self._stop.set()
        if self._drainer is not None:
            self._drainer.join()
            self._drainer = None
        if self._session is not None:
            self._session.close()
            self._session = None

    def poll(self) -> float | None:
        """The measured price once the child answered, else None."""
        proc = self._proc
        if proc is None or proc.poll() is None:
            if proc is not None and time.monotonic() - self._start > TIMEOUT_S:
                self.close()
                self.error = "the price measurement took too long"
            return self.event_ns
        out, err = proc.communicate()
        self._proc = None
        self._close_session()
        self.at_s = time.monotonic() - self._start
        import json

        try:
            self.event_ns = float(json.loads(out)["event_ns"])
        except (ValueError, KeyError, TypeError):
            lines = err.strip().splitlines()
            self.error = f"the price measurement failed: {lines[-1] if lines else f'exit {proc.returncode}'}"
        return self.event_ns

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.communicate()
            self._proc = None
        self._close_session()


def main() -> None:
    fd, engine, native = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
    got = measure(fd, engine, native)
    print("{" + ", ".join(f'"{k}": {v!r}' for k, v in got.items()) + "}")  # JSON (no json import)


if __name__ == "__main__":
    main()
