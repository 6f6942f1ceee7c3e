"""Running a program under ulma: the session, the child, the drain loop.

The session is a name-free memfd: nothing appears in /dev/shm, and the kernel
frees it when the last process holding it ends, however that happens (even
``kill -9`` of every ulma process).  The monitor -- this process -- maps it,
hands it to the program as an inherited descriptor, and drains the rings
while the program runs, so a live view sees the program as it is now.
"""

from __future__ import annotations

import os
import select
import sys
import threading
import time
from collections.abc import Iterator

from ulma import __version__, _core
from ulma.agent import DEFAULT_CPU_INTERVAL_US, AgentOptions, bootstrap
from ulma.format.plain import Frozen, Plain
from ulma.monitor import eventloop, prestart
from ulma.monitor.control import Control
from ulma.monitor.step import Stepper

# `ulma run` imports this on its way to starting the program: what only a
# trace file needs (the trace format, zstandard, json, queue, socket) is
# imported by the Recorder, typing only by the type checker, subprocess only
# when the program is not run in the prestarted interpreter, and what the
# monitor needs once the program runs (profile, terminal) after it started,
# so that their import overlaps the program's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import queue
    from typing import IO, Any, TypeVar

    from ulma.format import trace
    from ulma.monitor.children import Children
    from ulma.monitor.dial import Burst, Dial, DialState
    from ulma.monitor.live import Health
    from ulma.monitor.profile import Profile, Symbol
    from ulma.monitor.streams import LogWriter, Streams

    _Row = TypeVar("_Row")
    _Item = tuple[list[trace.SymbolDef], list[tuple[int, bytes]], dict[str, float] | None]

DEFAULT_RING_BYTES = 8 << 20
DEFAULT_MAX_THREADS = 4096  # rings in use at once; a finished thread's ring is reused
MAX_THREADS_LIMIT: int = _core.LIMITS["MAX_THREADS"]  # records.h ULMA_MAX_THREADS
# the wait after a drain that found little; the smallest ring allowed holds a thread's events
# for this long (records.h ULMA_DRAIN_WAIT_US)
DRAIN_WAIT_SECONDS: float = _core.LIMITS["DRAIN_WAIT_US"] / 1e6
ENGINE_NAMES = {1: "monitoring", 2: "pep523", 3: "native"}


class Target(Frozen):
    """What to run: a script path or a module name, with its arguments."""

    __slots__ = ("args", "kind", "name")

    kind: str  # "script", "module", or "native" (a program without Python, ulma/ulma_runtime.c)
    name: str
    args: tuple[str, ...]

    def __init__(self, kind: str, name: str, args: tuple[str, ...]) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "args", args)


# the dial's window: short, as a call-bound program pays full tracing until
# its first decision (fib: 2.7x for those 20 ms)
DIAL_SECONDS = 0.02


class Options(Frozen):
    __slots__ = (
        "budget",
        "burst",
        "children",
        "cpu_interval_us",
        "dial_seconds",
        "empty_hooks",
        "engine",
        "exclude",
        "id_limit",
        "jsonl_path",
        "log_path",
        "loop_block_ms",
        "max_threads",
        "native_calls",
        "objects",
        "only",
        "poll_seconds",
        "recording_floor",
        "ring_bytes",
        "trace_path",
    )

    engine: str
    ring_bytes: int
    max_threads: int
    empty_hooks: bool
    recording_floor: bool  # benchmarks: hooks that read the clock and store 16 bytes
    poll_seconds: float
    trace_path: str | None  # also keep the event stream in this file
    native_calls: bool
    cpu_interval_us: int
    exclude: tuple[str, ...]
    id_limit: int  # function ids (0: 2**24); tests use fewer to reach the overflow row
    log_path: str | None  # --log: the text export's lines, as the program runs
    jsonl_path: str | None  # --jsonl: one JSON object per refresh
    only: tuple[str, ...]  # --only: trace only the Python functions these shell patterns match
    budget: float  # --budget: the overhead the dial keeps under, % of plain (0: no dial)
    dial_seconds: float  # the dial's window (--refresh)
    burst: tuple[int, int] | None  # --burst ON_MS:PERIOD_MS
    children: bool  # follow the program's child processes (not --no-children)
    loop_block_ms: float  # --loop-block: flag an event loop held longer (0: never)
    objects: tuple[str, ...] | None  # --objects (--objects-types: the types kept; empty: all); None: off

    def __init__(self, engine: str, ring_bytes: int = DEFAULT_RING_BYTES,
                 max_threads: int = DEFAULT_MAX_THREADS, empty_hooks: bool = False,
                 recording_floor: bool = False, poll_seconds: float = DRAIN_WAIT_SECONDS,
                 trace_path: str | None = None,
                 native_calls: bool = False, cpu_interval_us: int = DEFAULT_CPU_INTERVAL_US,
                 exclude: tuple[str, ...] = (), id_limit: int = 0, log_path: str | None = None,
                 jsonl_path: str | None = None, only: tuple[str, ...] = (), budget: float = 0.0,
                 dial_seconds: float = DIAL_SECONDS, burst: tuple[int, int] | None = None,
                 children: bool = False, loop_block_ms: float = eventloop.DEFAULT_BLOCK_MS,
                 objects: tuple[str, ...] | None = None) -> None:
        object.__setattr__(self, "engine", engine)
        object.__setattr__(self, "ring_bytes", ring_bytes)
        object.__setattr__(self, "max_threads", max_threads)
        object.__setattr__(self, "empty_hooks", empty_hooks)
        object.__setattr__(self, "recording_floor", recording_floor)
        object.__setattr__(self, "poll_seconds", poll_seconds)
        object.__setattr__(self, "trace_path", trace_path)
        object.__setattr__(self, "native_calls", native_calls)
        object.__setattr__(self, "cpu_interval_us", cpu_interval_us)
        object.__setattr__(self, "exclude", exclude)
        object.__setattr__(self, "id_limit", id_limit)
        object.__setattr__(self, "log_path", log_path)
        object.__setattr__(self, "jsonl_path", jsonl_path)
        object.__setattr__(self, "only", only)
        object.__setattr__(self, "budget", budget)
        object.__setattr__(self, "dial_seconds", dial_seconds)
        object.__setattr__(self, "burst", burst)
        object.__setattr__(self, "children", children)
        object.__setattr__(self, "loop_block_ms", loop_block_ms)
        object.__setattr__(self, "objects", objects)

    def agent(self) -> AgentOptions:
        return AgentOptions(self.engine, self.native_calls, self.cpu_interval_us, self.exclude,
                            self.id_limit, self.only, self.objects)


def _hint_scale(text: str | None) -> float:
    """ULMA_DEBUG_HINT_SCALE (tests): a positive number, else one line for the user."""
    try:
        value = float(text or 1.0)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        from ulma.cli.errors import UsageError
        raise UsageError(f"{Session.ENV_HINT_SCALE} must be a positive number, not {text!r}")
    return value


# symbols the dial never switches: ulma's own, and those not traced anyway
HIDDEN_OR_OFF: int = _core.LAYOUT["SYMF_HIDDEN"] | _core.LAYOUT["SYMF_UNMEASURED"] | _core.LAYOUT["SYMF_OFF"]


class Session:
    """A shared-memory session seen from the monitor."""

    # Tests only: multiplies the first 2 ms calibration as the replay (live,
    # and a trace's META) starts from it, to show that no figure depends on
    # it (the monitor refines it over the run).
    ENV_HINT_SCALE = "ULMA_DEBUG_HINT_SCALE"

    def __init__(self, ring_bytes: int, max_threads: int, fd: int | None = None,
                 clock_start: tuple[int, int, int] | None = None,
                 loop_block_ms: float = eventloop.DEFAULT_BLOCK_MS) -> None:
        """`fd`: a new, empty memfd made sealable (ulma.monitor.prestart), else one is made;
        `clock_start`: a _core.clock_pair() read earlier, which the session and its first
        calibration start from (then the 2 ms that calibration needs are likely over);
        `loop_block_ms`: --loop-block, an event loop held longer is flagged (0: never)."""
        # sealable: the C side fixes its size (see ulma_monitor_create)
        self.fd = os.memfd_create("ulma-session", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING) if fd is None else fd
        try:
            self.hint_scale = _hint_scale(os.environ.get(self.ENV_HINT_SCALE))
            self.core = _core.Session(self.fd, ring_bytes, max_threads, hint_scale=self.hint_scale,
                                      clock_start=clock_start)
        except BaseException:
            os.close(self.fd)
            raise
        self.symbols: dict[int, Symbol] = {}
        self._files: dict[str, str] = {}  # one str per file name, however many functions it has
        self.lock = threading.Lock()  # the C replay is not thread-safe
        counters = self.core.counters()
        self.start_ticks: int = counters["start_ticks"]
        self.start_mono_ns: int = counters["start_mono_ns"]
        self.clock: str = counters["clock"]
        self.scope: tuple[str, ...] = ()  # --only / --exclude in effect, for the report
        self.control = Control(self.core, self.lock, lambda t: self.mono_ns(t, self.ns_per_tick()),
                               time.monotonic_ns)
        self.dial: Dial | None = None  # --budget: switches functions off to keep the overhead down
        self.burst: Burst | None = None  # --burst: every function on in bursts only
        self._names: dict[int, str] = {}  # every symbol, when _switchable was made
        self._switchable: dict[int, str] = {}  # the functions the dial and the burst may switch
        self.stepper = Stepper(self.core, self.lock)
        # asyncio: callbacks and task steps that hold the event loop too long
        self.blocks = eventloop.BlockWatch(self.core, loop_block_ms * 1e6)
        self.tasks = eventloop.TaskWatch(self.core)  # asyncio tasks one by one
        # --to (ulma.fleet.sender.Streamer): takes each drain's new symbols and, when its
        # `events` is set, copies of its records; it never waits
        self.tap: Any = None

    def close_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def drain(self, postmortem: bool = False, recorder: Recorder | None = None,
              log: LogWriter | None = None) -> int:
        """Replays what the rings hold; the same records go to the trace
        (`recorder`, -o) and the text log (`log`, --log)."""

        chunks: list[tuple[int, bytes]] = []
        tids: dict[int, int] = {}
        with self.lock:
            # symbols before the drain too, until the event loop's Handle._run is known: the
            # frames of it drained now are then timed (symbols come before their events)
            early = self.core.symbols() if not self.blocks.fid and self.blocks.limit_ns > 0 else []
            if early:
                self._learn(early)
            if not self.blocks.started:  # tasks' steps, from the first events on
                self.blocks.start(self.ns_per_tick())
            if (recorder is not None and recorder.active) or (log is not None and log.error is None) \
                    or (self.tap is not None and self.tap.events):
                n, chunks = self.core.drain(postmortem, copy=True)
            else:
                n = self.core.drain(postmortem=postmortem)
            later = self.core.symbols()
            if later:
                self._learn(later)
            new = early + later if early else later
            self.blocks.take(self.symbols, self.start_ticks, self.ns_per_tick())
            self.tasks.take(self.symbols, self.start_ticks, self.ns_per_tick())  # the finished ones
            if log is not None and any(t not in log.known_threads for t, _ in chunks):
                for t in self.core.threads():  # a new thread: its OS id, once
                    if t["thread"] not in log.known_threads:
                        log.known_threads.add(t["thread"])
                        tids[t["thread"]] = t["os_tid"]
        if log is not None:
            log.write(new, chunks, tids)
        if recorder is not None:
            recorder.write(new, chunks, log.ns_per_tick if log is not None else None)
        if self.tap is not None:
            self.tap.take(new, chunks)
        self.control.poll()
        if self.dial is not None:
            self.turn_dial()
        if self.burst is not None:
            self.burst.tick(self.switchable())
        return n

    def _learn(self, new: list[tuple[int, int, int, str, str, int]]) -> None:
        from ulma.monitor.profile import Symbol

        files = self._files
        added = []
        task_kind = _core.LAYOUT["SYM_TASK"]
        for sid, kind, flags, name, file, line in new:
            if kind == task_kind:  # a task's name: not a function's
                self.tasks.symbol(sid, name)
                continue
            sym = self.symbols[sid] = Symbol(sid, kind, flags, name, files.setdefault(file, file), line)
            added.append(sym)
        if not self.blocks.fid and self.blocks.limit_ns > 0:
            self.blocks.symbols(added, self.ns_per_tick())

    def switchable(self) -> dict[int, str]:
        """id -> name of the Python functions seen that the dial or a burst may switch."""
        if len(self._names) != len(self.symbols):
            pyfunc = _core.LAYOUT["SYM_PYFUNC"]
            self._names = {sid: s.name for sid, s in list(self.symbols.items())}
            self._switchable = {sid: s.name for sid, s in list(self.symbols.items())
                                if s.kind == pyfunc and not s.flags & HIDDEN_OR_OFF}
        return self._switchable

    def set_budget(self, pct: float) -> DialState:
        """The view's `d`: the dial at `pct` % (0: off), made if there was none."""
        if self.dial is None:
            from ulma.monitor.dial import Dial  # only with a dial (dataclasses, the profile)

            self.dial = Dial(pct, self.control, DIAL_SECONDS)
        else:
            self.dial.budget(pct)
        return self.dial.state

    def turn_dial(self) -> None:
        """Lets the dial look at the totals, once per its window."""
        dial = self.dial
        if dial is None or not dial.due(time.monotonic()):
            return
        scale = self.ns_per_tick()
        with self.lock:
            functions, _, _, _ = self.core.snapshot(live=False, split=False, rate=scale)
            info = self.core.agent_info()
            counters = self.core.counters()
        probe_ns, pid = info["probe_ns"], counters["agent_pid"]
        if not dial.pricing_started and info["program_start_ticks"]:  # the agent started: its engine is known
            dial.start_pricing(ENGINE_NAMES.get(counters["engine"], "none"), info["native_calls"],
                               counters["ring_events"] * _core.LAYOUT["EVENT_BYTES"])
        dial.tick(functions, self.switchable(), probe_ns, scale, cpu_ns=process_cpu_ns(pid))

    def clear(self) -> None:
        with self.lock:
            self.core.clear()
            self.tasks.clear()

    def close_all(self) -> None:
        with self.lock:
            self.core.close_all()

    def counters(self) -> dict[str, Any]:
        with self.lock:
            return self.core.counters()

    def ns_per_tick(self) -> float:
        """Calibrates the tick clock against CLOCK_MONOTONIC over the whole
        session so far; the longer it ran, the better the figure."""
        ticks, mono = self.core.clock()
        dt = ticks - self.start_ticks
        return (mono - self.start_mono_ns) / dt if dt > 0 else 1.0

    def mono_ns(self, ticks: int, scale: float) -> int:
        """A tick reading as CLOCK_MONOTONIC ns, at `scale` ns per tick."""
        return self.start_mono_ns + round((ticks - self.start_ticks) * scale)

    def program_span_ns(self, scale: float | None = None) -> tuple[int, int] | None:
        """(first, last) event of the program, any thread, as CLOCK_MONOTONIC
        ns: when it ran, on its own clock -- a monitor that was stopped or slow
        to see the exit does not stretch it.  It starts once the agent's
        start-up (its calibration) is done.  None before the first event."""
        with self.lock:
            threads = self.core.threads()
            started = self.core.agent_info()["program_start_ticks"]
        spans = [(t["first_tick"], t["last_tick"]) for t in threads if t["events"]]
        if not spans:
            return None
        first, last = min(a for a, _ in spans), max(b for _, b in spans)
        if first < started <= last:
            first = started
        k = scale if scale is not None else self.ns_per_tick()
        return self.mono_ns(first, k), self.mono_ns(last, k)

    def profile(self, *, wall_ns: int, live: bool = False, thread: int | None = None,
                scale: float | None = None, final: bool = False) -> Profile:
        """The totals as a profile; `scale` (ns per tick) defaults to the
        calibration now (waiting is formed at this rate, for everything
        replayed so far).  `final`: the last one, after the program ended and
        the last drain; the replay's totals are freed as they are read."""
        from ulma.monitor.profile import ThreadInfo, build_profile

        if scale is None:
            scale = self.ns_per_tick()
        with self.lock:
            functions, edges, counter_rows, object_rows = self.core.snapshot(
                live=live, thread=thread, split=True, now_cpu=self._cpu_now() if live else None, rate=scale,
                final=final)
            counters = self.core.counters()
            threads = self.core.threads()
            info = self.core.agent_info()
            # nothing adds symbols after the last drain: no copy needed
            symbols = self.symbols if final else dict(self.symbols)
            # the tasks still going: their current step or wait counts until now (live), or
            # until the program's last event (final)
            now = (max((t["last_tick"] for t in threads), default=0) if final or not live
                   else self.core.clock()[0])
            # (under the lock: the drain adds finished tasks meanwhile)
            going = self.tasks.take(symbols, self.start_ticks, scale, live=True, now=now)
            tasks = self.tasks.finished() + going
            task_totals = self.tasks.snapshot_totals()
        # the rows are dropped as they become the profile's: a program that
        # made 300 000 functions never holds both forms at once
        rows = _consumed(functions)
        profile = build_profile(
            symbols, rows, _consumed(edges), scale,
            python=sys.version.split()[0], wall_ns=wall_ns,
            engine=ENGINE_NAMES.get(counters["engine"], "none"), clock=self.clock,
            probe_ns=info["probe_ns"], scope_probe_ns=info["scope_probe_ns"],
            scope_end_probe_ns=info["scope_end_probe_ns"],
            split_known=info["cpu_samples"], schedstat=info["schedstat"],
            native_calls=info["native_calls"], switched=self.switched(),
            counters=counter_rows, objects=object_rows,
            clock0=(info["program_start_ticks"] or self.start_ticks, self.start_ticks, self.start_mono_ns),
        )
        profile.scope = self.scope
        profile.loop_block_ns = self.blocks.limit_ns
        profile.loop_blocks = list(self.blocks.blocks)
        profile.loop_blocks_over = self.blocks.over
        profile.tasks, profile.task_totals = tasks, task_totals
        if self.dial is not None:
            profile.dial = self.dial.report(profile.functions, final)
        if self.burst is not None:
            profile.burst = self.burst.report()
        profile.threads = [
            ThreadInfo(thread=t["thread"], os_tid=t["os_tid"], events=t["events"], dropped=t["dropped"],
                       lost_ns=round(t["lost_ticks"] * scale), unmatched=t["unmatched"])
            for t in threads
        ]
        profile.threads_overflow = counters["threads_overflow"]
        profile.untraced_events = counters["unringed_events"]
        profile.symtab_overflow = counters["symtab_overflow"]
        profile.tool_id = counters["tool_id"] if profile.engine == "monitoring" else None
        profile.hooks_displaced = counters["hooks_displaced"]
        profile.ids_overflow = counters["ids_overflow"]
        profile.forked_children = counters["forked_children"]
        profile.objects = objects_info(counters)
        profile.task_totals.not_followed += counters["tasks_untold"]  # the agent's (tasks.c)
        return profile

    def switched(self) -> dict[int, tuple[bool, int]]:
        """id -> (off now, ns it was off so far) of every function switched
        through the control channel."""
        now = time.monotonic_ns()
        return {fid: (sw.off_since_ns is not None, sw.off_total(now))
                for fid, sw in list(self.control.functions.items())}

    def agent_info(self) -> dict[str, Any]:
        with self.lock:
            return self.core.agent_info()

    # A thread with no event for this long is likely blocked (or deep in C):
    # a live view reads its CPU time from outside, so the wait shows now.
    QUIET_NS = 20_000_000

    def _cpu_now(self) -> dict[int, int]:
        """{thread: CPU ns} for the threads that have been quiet a while,
        read from /proc/<pid>/task/<tid>/schedstat (exact for a thread that is
        off CPU, which is the case that matters).  Called under the lock."""
        pid = self.core.counters()["agent_pid"]
        info = self.core.agent_info()
        if not pid or not info["cpu_samples"]:
            return {}
        now_ticks, _ = self.core.clock()
        quiet = self.QUIET_NS / max(info["ns_per_tick_hint"], 1e-9)
        out: dict[int, int] = {}
        for t in self.core.threads(open_only=True):
            if t["closed"] or not t["cpu_tick"] or now_ticks - t["last_tick"] < quiet:
                continue
            try:
                with open(f"/proc/{pid}/task/{t['os_tid']}/schedstat", "rb") as f:
                    out[t["thread"]] = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return out

    def close(self) -> None:
        self.close_fd()
        with self.lock:
            self.core.close()


class Recorder:
    """Keeps the drained event stream in a trace file.

    Compression and writing run in a thread of their own (both release the
    GIL), so a slow disk or codec never holds up draining -- that would make
    the rings overflow.  A write error (a full disk) stops the recording,
    never the program or the live profile."""

    QUEUE_ITEMS = 32  # drains in flight (memory bound); beyond that, draining waits for the disk

    def __init__(self, path: str, session: Session, engine: str) -> None:
        import queue
        import socket

        from ulma.format import trace

        counters = session.counters()
        meta = {
            "ulma": __version__, "python": sys.version.split()[0], "host": socket.gethostname(),
            "engine": engine, "clock": session.clock, "monitor_pid": os.getpid(),
            "start_ticks": counters["start_ticks"], "start_mono_ns": counters["start_mono_ns"],
            "start_real_ns": counters["start_real_ns"], "ring_events": counters["ring_events"],
            # a first calibration (2 ms at creation): the replay needs one before the END record's
            "ns_per_tick": session.agent_info()["ns_per_tick_hint"],  # skewed by hint_scale (tests)
            "scope": list(session.scope),
            "loop_block_ms": session.blocks.limit_ns / 1e6,  # `ulma report` judges the trace by it
        }
        self.path = path
        self.error: str | None = None
        self.writer = trace.TraceWriter(path, meta)
        self._agent_seen = False  # its start-up figures written (see write())
        self.text_ns_per_tick: float | None = None  # --log's calibration (see monitor.streams)
        self._queue: queue.Queue[_Item | None] = queue.Queue(self.QUEUE_ITEMS)
        self._session = session
        self._next_calib = time.monotonic() + 1.0
        self._thread = threading.Thread(target=self._loop, name="ulma-trace-writer", daemon=True)
        self._thread.start()

    @property
    def active(self) -> bool:
        return self.error is None

    def _loop(self) -> None:
        import json

        from ulma.format import trace

        while (item := self._queue.get()) is not None:
            if self.error is not None:
                continue  # keep taking items so the drain never blocks on us
            defs, chunks, calib = item
            try:
                self.writer.symbols(defs)
                for slot, data in chunks:
                    self.writer.events(slot, data)
                if calib is not None:
                    self.writer.chunk(trace.CALIB, json.dumps(calib).encode())
            except OSError as exc:
                self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self.error = f"cannot write the trace {self.path}: {exc.strerror or exc}; recording stopped"
        self.writer.abandon()

    def write(self, symbols: list[tuple[int, int, int, str, str, int]],
              chunks: list[tuple[int, bytes]], text_ns_per_tick: float | None = None) -> None:
        # What a file cut short needs to be read right: the calibration so far
        # (about once a second) and what the agent measured at its start (the
        # probe cost: META goes out before the program starts, without it),
        # written as soon as the agent published it, before its first events.
        from ulma.format import trace

        calib: dict[str, Any] | None = None
        due = time.monotonic() >= self._next_calib
        # --log's calibration, as soon as it is fixed: the text export then agrees with the log
        due = due or (text_ns_per_tick is not None and self.text_ns_per_tick is None)
        if text_ns_per_tick is not None:
            self.text_ns_per_tick = text_ns_per_tick
        info = self._session.agent_info() if due or not self._agent_seen else {}
        fresh = not self._agent_seen and info.get("program_start_ticks", 0) != 0
        if fresh or due:
            self._next_calib = time.monotonic() + 1.0
            self._agent_seen = self._agent_seen or fresh
            calib = {"ns_per_tick": self._session.ns_per_tick()}
            if self.text_ns_per_tick is not None:
                calib["text_ns_per_tick"] = self.text_ns_per_tick
            if self._agent_seen:
                calib.update({key: info[key] for key in trace.AGENT_KEYS})
        if self.error is None and (symbols or chunks or calib):
            defs = [trace.SymbolDef(sid, kind, flags, name, file, line)
                    for sid, kind, flags, name, file, line in symbols]
            self._queue.put((defs, chunks, calib))

    def abandon(self) -> None:
        """Nothing more comes (the attach failed): the file goes."""
        self._queue.put(None)
        self._thread.join()
        if self.error is None:
            self.writer.abandon()

    def close(self, end: dict[str, Any]) -> None:
        self._queue.put(None)
        self._thread.join()
        if self.error is None:
            try:
                self.writer.close(end)
            except OSError as exc:
                self._fail(exc)


class RunResult(Plain):
    __slots__ = ("profile", "returncode", "started", "streams_said", "trace_error")

    returncode: int
    profile: Profile
    started: bool  # False: the program never ran (bad module, unreadable script)
    trace_error: str | None
    streams_said: list[str]  # --log / --jsonl: "warning: ..." or "error: ..." lines for stderr

    def __init__(self, returncode: int, profile: Profile, started: bool,
                 trace_error: str | None = None, streams_said: list[str] | None = None) -> None:
        self.returncode = returncode
        self.profile = profile
        self.started = started
        self.trace_error = trace_error
        self.streams_said = streams_said or []


def _child_command(target: Target) -> list[str]:
    if target.kind == "native":  # its runtime maps the session itself (ULMA_SESSION_FD)
        return [target.name, *target.args]
    return [sys.executable, "-c", bootstrap.BOOT_CODE, target.kind, target.name, *target.args]


def is_native(path: str) -> bool:
    """Is `path` an executable ELF file (a program ulma starts as it is, for its own runtime
    to report into), rather than a Python script?"""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF" and os.access(path, os.X_OK)
    except OSError:
        return False


class Run:
    """A program running under ulma, seen from the monitor.

    The drain loop (``drain_until_exit``) may run in a worker thread while a
    view asks for ``live_profile()`` snapshots from another: the C replay is
    not thread-safe, so both go through the session's lock (the drain itself
    releases the GIL)."""

    def __init__(self, target: Target, options: Options, *, stdin: int | IO[bytes] | None = None,
                 stdout: int | IO[bytes] | None = None, stderr: int | IO[bytes] | None = None,
                 step: bool = False) -> None:
        self.options = options
        # the program's interpreter, if `ulma run` started it early (and its streams are ours)
        early = prestart.take() if stdin is None and stdout is None and stderr is None else None
        if early is not None and target.kind == "native":  # no Python to run: not needed
            early.discard()
            early = None
        fd = clock_start = None
        if early is not None:  # its memfd is the session's from now on (closed with it)
            fd, early.session_fd = early.session_fd, -1
            clock_start = early.clock_start
        try:
            self.session = Session(options.ring_bytes, options.max_threads, fd=fd, clock_start=clock_start,
                                   loop_block_ms=options.loop_block_ms)
        except BaseException:
            if early is not None:
                early.discard()
            raise
        if step:  # single-step from the program's first call (--step): asked before it starts
            self.session.stepper.stop()
        self.session.scope = scope_of(options.only, options.exclude)
        if options.budget or options.burst:
            from ulma.monitor.dial import Burst, Dial  # only with a dial (dataclasses, the profile)
        if options.budget:
            self.session.dial = Dial(options.budget, self.session.control, options.dial_seconds)
        if options.burst:
            self.session.burst = Burst(*options.burst, self.session.control)
        empty = "2" if options.recording_floor else "1" if options.empty_hooks else "0"
        env = dict(os.environ)
        env[bootstrap.ENV_FD] = str(self.session.fd)
        env[bootstrap.ENV_OPTIONS] = options.agent().encode()
        env[bootstrap.ENV_EMPTY] = empty
        self.streams: Streams | None = None
        self.log: LogWriter | None = None
        if options.log_path or options.jsonl_path:  # before the program starts, as the trace
            from ulma.monitor.streams import Streams

            try:
                self.streams = Streams(options.log_path, options.jsonl_path)
            except BaseException:
                if early is not None:
                    early.discard()
                self.session.close()
                raise
            self.log = self.streams.log
        self.recorder: Recorder | None = None
        if options.trace_path:  # before the program starts: a file we cannot write stops us here
            try:
                self.recorder = Recorder(options.trace_path, self.session, options.engine)
            except OSError as exc:
                if self.streams is not None:
                    self.streams.abandon()
                if early is not None:
                    early.discard()
                self.session.close()
                raise OSError(exc.errno, f"cannot write {options.trace_path}: {exc.strerror}") from None
        self.command = " ".join([target.name if target.kind == "script" else f"-m {target.name}",
                                 *target.args])
        self.children: Children | None = None
        children = ""
        self.start_ns = time.monotonic_ns()
        self.proc: prestart.Child
        try:
            # the program's children connect to it (see ulma.monitor.children); a native
            # program's runtime follows none
            if options.children and target.kind != "native":
                from ulma.monitor.children import Children

                self.children = Children(options, lambda: float(self.session.agent_info()["probe_ns"]))
                children = env[bootstrap.ENV_CHILDREN] = "@" + self.children.address[1:]
            if early is not None:
                if early.go([options.agent().encode(), empty, children, target.kind, target.name,
                             *target.args]):
                    self.proc = early.proc
                else:  # it died waiting: start another
                    early.discard()
                    early = None
            if early is None:
                import subprocess

                try:
                    self.proc = subprocess.Popen(_child_command(target), env=env, pass_fds=(self.session.fd,),
                                                 stdin=stdin, stdout=stdout, stderr=stderr)
                except OSError as exc:  # the caller says it in one line
                    what = target.name if target.kind == "native" else sys.executable
                    raise OSError(exc.errno, f"cannot start {what}: {exc.strerror}") from None
        except BaseException:
            if self.children is not None:
                self.children.finish(0)
            if early is not None:
                early.discard()
            if self.streams is not None:
                self.streams.abandon()
            self.session.close()
            raise
        self.session.close_fd()  # the child has its own; the mapping keeps the memory
        if self.children is not None:
            self.children.program_pid = self.proc.pid
        self.returncode: int | None = None
        if self.streams is not None:
            self.streams.start(self.session, self.proc.pid, self._stream_snapshot)

    def _stream_snapshot(self) -> tuple[Profile, Health]:
        from ulma.monitor.live import health_of

        profile = self.live_profile()
        if self.children is not None:  # --jsonl's lines count the children as the report does
            rows = self.children.snapshot()
            if rows:
                from ulma.monitor.children import merge_rows
                from ulma.monitor.profile import ProcessInfo

                merge_rows(profile, ProcessInfo(self.proc.pid, self.command, "main", "running", None), rows)
        return profile, health_of(self.session, self.end_ns is not None, self.returncode)


    def elapsed_ns(self) -> int:
        """Run time so far; once the program ended, its own (first to last event)."""
        span = self.session.program_span_ns() if self.end_ns is not None else None
        if span is not None:
            return span[1] - span[0]
        end = self.end_ns if self.end_ns is not None else time.monotonic_ns()
        return end - self.start_ns

    # The wall time the totals cover runs from the start or the last clear()
    # to the program's end: % stays right after a clear, and a view that
    # lingers after the end does not stretch the run.
    window_start_ns: int | None = None
    end_ns: int | None = None  # when the monitor saw the exit (late if it was stopped)

    def covered_ns(self, scale: float | None = None) -> int:
        """Wall time the totals cover: since the program's first event or the
        last clear(), up to its last event once it ended (or now, while it
        runs), at `scale` ns per tick (default: the calibration now)."""
        span = self.session.program_span_ns(scale)
        start = self.window_start_ns or (span[0] if span else self.start_ns)
        ended = self.end_ns is not None
        end = (span[1] if span else self.end_ns or 0) if ended else time.monotonic_ns()
        return max(end - start, 0)

    @property
    def cleared(self) -> bool:
        return self.window_start_ns is not None

    def settle(self) -> None:
        """After the program ended: reads what it left in the rings, published
        or not, so a view shows the final totals before finish()."""
        self.session.drain(postmortem=True, recorder=self.recorder, log=self.log)

    def drain_until_exit(self, stop: threading.Event | None = None) -> int | None:
        """Drains while the program runs; returns its exit code, or None if
        `stop` was set first."""
        pidfd = os.pidfd_open(self.proc.pid)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        try:
            while stop is None or not stop.is_set():
                drained = self.session.drain(recorder=self.recorder, log=self.log)
                if self.children is not None:
                    drained += self.children.drain()
                # A busy ring is drained again at once; otherwise sleep until
                # the next poll or the program's exit, whichever comes first.
                wait_ms = 0 if drained > 4096 else int(self.options.poll_seconds * 1000) or 1
                poller.poll(wait_ms)
                if self.proc.poll() is not None:
                    self.end_ns = time.monotonic_ns()
                    self.returncode = self.proc.returncode
                    return self.returncode
            return None
        finally:
            os.close(pidfd)

    def live_profile(self, thread: int | None = None) -> Profile:
        """Totals so far, open frames counted up to now."""
        return self.session.profile(wall_ns=self.covered_ns(), live=True, thread=thread)

    def clear(self) -> None:
        """Forgets every total; the program is not affected."""
        self.session.clear()
        self.window_start_ns = time.monotonic_ns()

    def finish(self) -> RunResult:
        """After the program ended: the final profile, and the session freed."""
        returncode = self.proc.wait()
        if self.streams is not None:
            self.streams.stop()  # no snapshot from here on: the final figures free the totals
        if self.end_ns is None:
            self.end_ns = time.monotonic_ns()
        # Whatever the program wrote before it ended -- even by a crash, with
        # events it never published -- is still in the shared memory.
        self.session.drain(postmortem=True, recorder=self.recorder, log=self.log)
        self.session.close_all()
        scale = self.session.ns_per_tick()  # one calibration for the report and the trace
        wall_ns = self.covered_ns(scale)
        profile = self.session.profile(wall_ns=wall_ns, scale=scale, final=True)
        counters = self.session.counters()
        started = counters["agent_state"] != 0
        if self.children is not None:
            from ulma.monitor.children import merge_children

            merge_children(profile, self.proc.pid, self.command, returncode, self.children)
        trace_error = None
        if self.recorder is not None:
            self.recorder.close(end_record(self.session, profile, wall_ns, scale, returncode, self.proc.pid,
                                           self.log))
            trace_error = self.recorder.error
        self.session.close()
        said = self.streams.close(profile) if self.streams is not None else []
        return RunResult(returncode, profile, started, trace_error, said)


def end_record(session: Session, profile: Profile, wall_ns: int, scale: float, returncode: int | None,
               program_pid: int, log: LogWriter | None) -> dict[str, Any]:
    """A trace's END record (ulma.format.schema.End) for a run or an attachment that ended:
    its figures and final calibration.  `returncode`: None while the program goes on (a detach)."""
    from ulma.format import trace

    info = session.agent_info()
    counters = session.counters()
    return {
        "wall_ns": wall_ns, "ns_per_tick": scale, "engine": ENGINE_NAMES.get(counters["engine"], "none"),
        **{key: info[key] for key in trace.AGENT_KEYS},
        **({"returncode": returncode} if returncode is not None else {}),
        "program_pid": program_pid,
        "dropped": {str(t.thread): t.dropped for t in profile.threads},
        "os_tid": {str(t.thread): t.os_tid for t in profile.threads},
        "tool_id": profile.tool_id, "hooks_displaced": profile.hooks_displaced,
        "untraced_threads": profile.threads_overflow,
        "untraced_events": profile.untraced_events,
        "symbols_lost": profile.symtab_overflow,
        "forked_children": profile.forked_children,
        "tasks_untold": counters["tasks_untold"],
        **({f"objects_{key}": value for key, value in profile.objects.items()} if profile.objects else {}),
        "off_ns": {str(f.fid): f.off_ns for f in profile.functions if f.off_ns},
        "off_now": {str(f.fid): 1 for f in profile.functions if f.off},
        **({"text_ns_per_tick": log.ns_per_tick} if log is not None and log.ns_per_tick is not None else {}),
    }


# records.h ULMA_OBJECTS_*: "reftracer-late" where the interpreter does not tell the ref tracer of
# every destruction (CPython 3.13.0): those are found when the address is taken again
OBJECTS_MECHANISMS = {_core.LAYOUT["OBJECTS_REFTRACER"]: "reftracer",
                      _core.LAYOUT["OBJECTS_REFTRACER_LATE"]: "reftracer-late",
                      _core.LAYOUT["OBJECTS_ALLOCATOR"]: "allocator"}


def objects_info(counters: dict[str, Any]) -> dict[str, int | str] | None:
    """--objects: how the agent saw objects, and what it could not keep (None: not asked for)."""
    mechanism = OBJECTS_MECHANISMS.get(counters["objects_mechanism"])
    if mechanism is None:
        return None
    return {"mechanism": mechanism, "untracked": counters["objects_untracked"],
            "types_overflow": counters["types_overflow"], "displaced": counters["objects_displaced"]}


def process_cpu_ns(pid: int) -> int | None:
    """CPU time of every thread of `pid` so far (ns, from schedstat), or None
    where the kernel does not say."""
    if not pid:
        return None
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return total


def scope_of(only: tuple[str, ...], exclude: tuple[str, ...]) -> tuple[str, ...]:
    """The --only and --exclude options in effect, as the report names them."""
    return (*(f"--only {p}" for p in only), *(f"--exclude {p}" for p in exclude))


def _consumed(rows: list[_Row]) -> Iterator[_Row]:
    """The rows in order, each removed from the list as it is handed out."""
    rows.reverse()
    while rows:
        yield rows.pop()


def run(target: Target, options: Options) -> RunResult:
    """Runs the target with the agent on and drains it until it exits.

    Ctrl-C reaches the program (it is in our process group) and ulma waits
    for it, so the report still comes; SIGTERM/SIGHUP are passed on (see
    ``terminal.Forwarding``)."""
    running = Run(target, options)
    from ulma.monitor.terminal import Forwarding  # once the program starts (see the imports)

    with Forwarding().to(running.proc):
        running.drain_until_exit()
    return running.finish()
