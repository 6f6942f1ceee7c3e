"""asyncio, read from a profile: the event loop's idle wait and the tasks.

The C replay already counts a coroutine's time suspended in ``await`` as its
waiting (aggregate.h, "Coroutines").  What this module adds is naming, from
the functions and edges of a profile, live or final, from a run or a trace:

- **idle**: the selector's ``select`` (selectors.py) called by the event
  loop's ``_run_once`` -- the loop waiting for I/O with nothing ready -- and,
  with native calls, the C poll under it.  Such rows are marked ``idle``: the
  report and the live view leave them out of the ranking and say how long the
  loop was idle, so an asyncio program's report leads with its handlers.
- **blocked**: a callback or a task's step (Handle._run) that held the loop
  longer than ``--loop-block`` ms (default 50) is kept with its stack
  (BlockWatch: the C replay times that one function's frames).
- **tasks**: the coroutines an event loop runs as tasks (their caller is the
  loop's ``Handle._run``), one line per coroutine function: how many, their
  time running (on the thread: CPU, or blocking the loop) and awaiting.

Names are matched on the standard library's own files (``.../asyncio/...``,
``.../selectors.py``); an event loop other than asyncio's (uvloop) is not
recognised.
"""

from __future__ import annotations

from ulma.format.plain import Frozen, Plain

TYPE_CHECKING = False  # no typing import in the monitor's start-up (test_footprint)
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Protocol

    from ulma.format.records import Symbol
    from ulma.monitor.profile import FunctionStats, Profile

    class _Watched(Protocol):
        def watch(self, fid: int, ticks: int, /) -> None: ...
        def take_blocks(self) -> tuple[list[tuple[int, int, int, tuple[int, ...]]], int]: ...

SELECT_FILE = "selectors.py"
LOOP_FILE = "base_events.py"
LOOP_STEP = "BaseEventLoop._run_once"
HANDLE_FILE = "events.py"
HANDLE_RUN = "Handle._run"
# the C calls a selector waits in (--native-calls)
POLLS = frozenset({"select.epoll.poll", "select.poll.poll", "select.select", "select.kqueue.control",
                   "select.devpoll.poll", "epoll.poll", "poll.poll", "kqueue.control", "devpoll.poll"})


def _in(f: FunctionStats, package: str, filename: str) -> bool:
    path = f.file.replace("\\", "/")
    return path.endswith(f"/{package}/{filename}" if package else f"/{filename}")


def is_loop_step(f: FunctionStats) -> bool:
    return f.name == LOOP_STEP and _in(f, "asyncio", LOOP_FILE)


def is_handle_run(f: FunctionStats) -> bool:
    return f.name == HANDLE_RUN and _in(f, "asyncio", HANDLE_FILE)


def _is_select(f: FunctionStats) -> bool:
    return not f.native and f.name.endswith("Selector.select") and _in(f, "", SELECT_FILE)


def mark_idle(profile: Profile) -> None:
    """Marks the rows in which the event loop only waited: a selector's
    select every call of which came from the loop's _run_once, and a C poll
    every call of which came from such a select."""
    functions = profile.functions
    callers: dict[int, set[int]] = {}
    for e in profile.edges:
        callers.setdefault(e.callee, set()).add(e.caller)
    for i, f in enumerate(functions):
        f.idle = False
        if _is_select(f):
            from_ = callers.get(i, set())
            f.idle = bool(from_) and all(is_loop_step(functions[c]) for c in from_)
    for i, f in enumerate(functions):
        if f.native and f.name in POLLS:
            from_ = callers.get(i, set())
            f.idle = bool(from_) and all(functions[c].idle for c in from_)


def idle_ns(profile: Profile) -> int:
    """How long event loops waited with nothing ready (the outermost idle rows' total)."""
    return sum(f.total_ns for f in profile.functions if f.idle and not f.native)


class TaskGroup(Plain):
    """The tasks of one coroutine function: ``tasks`` started (its calls from
    the loop), ``steps`` (times the loop ran one of them), time ``running``
    (on its thread, CPU or blocking the loop) and ``awaiting``."""

    __slots__ = ("awaiting_ns", "file", "line", "name", "running_ns", "steps", "tasks")

    name: str
    file: str
    line: int
    tasks: int
    steps: int
    running_ns: int
    awaiting_ns: int

    def __init__(self, name: str, file: str, line: int, tasks: int, steps: int, running_ns: int,
                 awaiting_ns: int) -> None:
        self.name, self.file, self.line = name, file, line
        self.tasks, self.steps = tasks, steps
        self.running_ns, self.awaiting_ns = running_ns, awaiting_ns


def task_groups(profile: Profile) -> list[TaskGroup]:
    """The coroutines the loop runs as tasks (called from Handle._run: a
    task's step, which on CPython 3.12+ is C, between them), most time first."""
    functions = profile.functions
    handle = {i for i, f in enumerate(functions) if is_handle_run(f)}
    groups = []
    for e in profile.edges:
        if e.caller not in handle:
            continue
        f = functions[e.callee]
        if not f.coroutine:
            continue  # a plain callback
        groups.append(TaskGroup(f.name, f.file, f.line, e.calls, e.calls + e.resumes,
                                max(f.total_ns - f.await_ns, 0), f.await_ns))
    return sorted(groups, key=lambda g: -(g.running_ns + g.awaiting_ns))


DEFAULT_BLOCK_MS = 50.0  # asyncio's debug mode warns past 100 ms; a server feels 50
MAX_BLOCK_MS = 3_600_000  # --loop-block at most an hour (ulma.cli.bounds, a trace's META)
MAX_BLOCKS = 1000  # kept per run; more are counted


class LoopBlock(Frozen):
    """A callback or task step that held the event loop past the limit: its
    thread, when it started (ns into the run), how long it lasted, and the
    stack from Handle._run up at the moment it passed the limit (or at its
    end), outermost first, as (name, file, line)."""

    __slots__ = ("ns", "stack", "start_ns", "thread")

    thread: int
    start_ns: int
    ns: int
    stack: tuple[tuple[str, str, int], ...]

    def __init__(self, thread: int, start_ns: int, ns: int, stack: tuple[tuple[str, str, int], ...]) -> None:
        object.__setattr__(self, "thread", thread)
        object.__setattr__(self, "start_ns", start_ns)
        object.__setattr__(self, "ns", ns)
        object.__setattr__(self, "stack", stack)


class BlockWatch:
    """Flags the event loop held too long: asks the C replay (`core`, a
    Session or an Aggregator) to keep every Handle._run frame longer than
    `limit_ns` once that function's symbol is seen, and names what it kept."""

    def __init__(self, core: _Watched, limit_ns: float) -> None:
        self.core = core
        self.limit_ns = limit_ns
        self.fid = 0  # Handle._run's id, once seen
        self.blocks: list[LoopBlock] = []
        self.over = 0  # blocks past MAX_BLOCKS (or past what the replay keeps between takes)

    def symbols(self, new: Iterable[Symbol], ns_per_tick: float) -> None:
        """Looks for Handle._run among new symbols; watches it from then on."""
        if self.fid or self.limit_ns <= 0:
            return
        for s in new:
            if s.name == HANDLE_RUN and s.file.replace("\\", "/").endswith(f"/asyncio/{HANDLE_FILE}"):
                self.fid = s.id
                self.core.watch(s.id, max(1, round(self.limit_ns / max(ns_per_tick, 1e-9))))
                return

    def take(self, names: Mapping[int, Symbol], start_ticks: int, ns_per_tick: float) -> None:
        if not self.fid:
            return
        got, over = self.core.take_blocks()
        self.over += over
        for thread, start, ticks, ids in got:
            if len(self.blocks) >= MAX_BLOCKS:
                self.over += 1
                continue
            stack = tuple((s.name, s.file, s.line) if (s := names.get(i)) is not None
                          else (f"<unknown #{i}>", "?", 0) for i in ids)
            self.blocks.append(LoopBlock(thread, round((start - start_ticks) * ns_per_tick),
                                         round(ticks * ns_per_tick), stack))


def block_words(b: LoopBlock, frames: int = 4) -> str:
    """'210.3 ms in blocker (app.py:12) <- handler <- ...': innermost first."""
    from ulma.views.units import fmt_ns

    inner = [name for name, _, _ in reversed(b.stack)][:frames]
    where = " <- ".join(inner) if inner else "?"
    if b.stack:
        name, file, line = b.stack[-1]
        where = where.replace(name, f"{name} ({file.rsplit('/', 1)[-1]}:{line})", 1)
    return f"{fmt_ns(b.ns)} in {where}"
