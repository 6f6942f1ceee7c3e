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
- **tasks by coroutine**: the coroutines an event loop runs as tasks (their
  caller is the loop's ``Handle._run``), one line per coroutine function: how
  many, their time running (on the thread: CPU, or blocking the loop) and
  awaiting.
- **tasks** one by one (TaskWatch): the agent says which task each step is
  (records.h, "TASK records"), so each task has its name, its state (running,
  waiting -- in which coroutines --, done, failed), its steps, and its time
  running and waiting; the replay keeps them (tasktable.h), this names them.

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
        def watch(self, fid: int, ticks: int, steps: bool = ..., /) -> None: ...
        def take_blocks(self) -> tuple[list[tuple[int, int, int, tuple[int, ...]]], int]: ...

    # (number, coro, thread, state, first, since, steps, running, waiting, awaiting): ticks
    TaskRow = tuple[int, int, int, int, int, int, int, int, int, tuple[int, ...]]
    TaskTake = tuple[list[TaskRow], list[TaskRow], int, int]  # (done, going, over, going_total)

    class _Tasked(Protocol):
        def take_tasks(self, live: bool = ..., limit: int = ..., /) -> TaskTake: ...

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
    `limit_ns` once that function's symbol is seen, and every asyncio task's
    step from the start (`start`: a loop whose Handle._run is not Python,
    uvloop's, is seen blocked by its tasks' steps; under asyncio's own a
    step is inside a Handle._run frame already watched), and names what it
    kept."""

    def __init__(self, core: _Watched, limit_ns: float) -> None:
        self.core = core
        self.limit_ns = limit_ns
        self.fid = 0  # Handle._run's id, once seen
        self.started = False  # tasks' steps watched
        self.blocks: list[LoopBlock] = []
        self.over = 0  # blocks past MAX_BLOCKS (or past what the replay keeps between takes)

    def start(self, ns_per_tick: float) -> None:
        """Watches tasks' steps (before the first events are replayed)."""
        self.started = True
        if self.limit_ns > 0:
            self.core.watch(self.fid, max(1, round(self.limit_ns / max(ns_per_tick, 1e-9))), True)

    def symbols(self, new: Iterable[Symbol], ns_per_tick: float) -> None:
        """Looks for Handle._run among new symbols; watches it from then on."""
        if self.fid or self.limit_ns <= 0:
            return
        for s in new:
            if s.name == HANDLE_RUN and s.file.replace("\\", "/").endswith(f"/asyncio/{HANDLE_FILE}"):
                self.fid = s.id
                self.core.watch(s.id, max(1, round(self.limit_ns / max(ns_per_tick, 1e-9))), True)
                return

    def take(self, names: Mapping[int, Symbol], start_ticks: int, ns_per_tick: float) -> None:
        if not self.fid and not self.started:
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


# the replay's task states (tasktable.h), as the report says them
TASK_STATES = {1: "running", 2: "waiting", 3: "done", 4: "failed"}
MAX_TASKS_KEPT = 1000  # finished tasks kept per run, the longest-lived; the others are counted


class AsyncTask(Frozen):
    """One asyncio task: its `number` (the agent's, in the order first seen),
    `name` (get_name() at its first step), its coroutine function (`coroutine`,
    `file`, `line`), the `thread` that ran its last step, its `state`
    (TASK_STATES), `steps`, time `running_ns` (in its steps, on its thread)
    and `waiting_ns` (suspended between them), `start_ns` (its first step,
    into the run) and, suspended, `awaiting`: the coroutines above its own
    that it sits in, innermost first."""

    __slots__ = ("awaiting", "coroutine", "file", "line", "name", "number", "pid", "running_ns", "start_ns",
                 "state", "steps", "thread", "waiting_ns")

    number: int
    name: str
    coroutine: str
    file: str
    line: int
    thread: int
    state: str
    steps: int
    running_ns: int
    waiting_ns: int
    start_ns: int
    awaiting: tuple[str, ...]
    pid: int  # its process, once the children's are merged (0: not said)

    def __init__(self, number: int, name: str, coroutine: str, file: str, line: int, thread: int, state: str,
                 steps: int, running_ns: int, waiting_ns: int, start_ns: int, awaiting: tuple[str, ...],
                 pid: int = 0) -> None:
        for k, v in (("number", number), ("name", name), ("coroutine", coroutine), ("file", file),
                     ("line", line), ("thread", thread), ("state", state), ("steps", steps),
                     ("running_ns", running_ns), ("waiting_ns", waiting_ns), ("start_ns", start_ns),
                     ("awaiting", awaiting), ("pid", pid)):
            object.__setattr__(self, k, v)

    def of_process(self, pid: int) -> AsyncTask:
        return AsyncTask(self.number, self.name, self.coroutine, self.file, self.line, self.thread,
                         self.state, self.steps, self.running_ns, self.waiting_ns, self.start_ns,
                         self.awaiting, pid)


class TaskTotals(Plain):
    """What the run's tasks add up to: `seen` (numbered by the agent), `done`
    and `failed` (finished, by a return or an exception), `going` (not
    finished at the snapshot), `not_listed` (finished tasks past MAX_TASKS_KEPT
    and going ones past MAX_TASKS_LISTED: counted here only), `not_followed`
    (past what the replay keeps at once; the session adds the tasks the agent
    gave no number, past its own bound) and `unnamed` (the agent had no room
    for their names)."""

    __slots__ = ("done", "failed", "going", "not_followed", "not_listed", "seen", "unnamed")

    seen: int
    done: int
    failed: int
    going: int
    not_listed: int
    not_followed: int
    unnamed: int

    def __init__(self) -> None:
        self.seen = self.done = self.failed = self.going = self.not_listed = self.not_followed = 0
        self.unnamed = 0

    def copy(self) -> TaskTotals:
        out = TaskTotals()
        out.add(self)
        return out

    def add(self, other: TaskTotals) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class TaskWatch:
    """The tasks the C replay (`core`, a Session or an Aggregator) keeps,
    named: their names come as symbols of kind SYM_TASK (`names`), their
    coroutines as the functions' symbols.  Finished tasks are taken from the
    replay as they come (`take`); the MAX_TASKS_KEPT longest-lived are kept."""

    def __init__(self, core: _Tasked) -> None:
        self.core = core
        self.names: dict[int, str] = {}  # task number -> name
        self._done: list[tuple[int, int, AsyncTask]] = []  # a heap: (life, -number, task)
        self.totals = TaskTotals()
        self.going_total = self.going_cut = 0  # tasks going at the last live take, left out of it

    def symbol(self, sid: int, name: str) -> None:
        """A task's name (a symbol of kind SYM_TASK, id TASK_SYMBOL_BASE + number)."""
        from ulma.format.records import TASK_SYMBOL_BASE

        self.names[sid - TASK_SYMBOL_BASE] = name

    def _task(self, row: TaskRow, names: Mapping[int, Symbol], start_ticks: int, ns_per_tick: float,
              now: int) -> AsyncTask:
        number, coro, thread, state, first, since, steps, running, waiting, awaiting = row
        if now > since:  # still going: its current step or suspension counts until now
            if state == 1:
                running += now - since
            elif state == 2:
                waiting += now - since
        fn = names.get(coro)
        where = (fn.name, fn.file, fn.line) if fn is not None else (f"<unknown #{coro}>", "?", 0)
        return AsyncTask(number, self.names.get(number, f"task #{number}"), *where, thread,
                         TASK_STATES.get(state, "?"), steps,
                         round(running * ns_per_tick), round(waiting * ns_per_tick),
                         round((first - start_ticks) * ns_per_tick) if first >= start_ticks else 0,
                         tuple(s.name if (s := names.get(i)) is not None else f"<unknown #{i}>"
                               for i in awaiting))

    def take(self, names: Mapping[int, Symbol], start_ticks: int, ns_per_tick: float, *,
             live: bool = False, now: int = 0) -> list[AsyncTask]:
        """Takes the tasks finished since the last call; with `live`, returns
        the tasks still going (their figures up to `now`, in ticks; the
        MAX_TASKS_LISTED longest-lived, the others counted in `going_cut`),
        else []."""
        import heapq

        done, going, over, going_total = self.core.take_tasks(live, MAX_TASKS_LISTED)
        if live:
            self.going_total, self.going_cut = going_total, going_total - len(going)
        totals = self.totals
        totals.not_followed = over
        for row in (*done, *going):
            totals.seen = max(totals.seen, row[0])  # numbers go 1, 2, ... as the agent sees tasks
        for row in done:
            if row[0] not in self.names:
                totals.unnamed += 1
            task = self._task(row, names, start_ticks, ns_per_tick, 0)
            if task.state == "failed":
                self.totals.failed += 1
            else:
                self.totals.done += 1
            item = (task.running_ns + task.waiting_ns, -task.number, task)
            if len(self._done) < MAX_TASKS_KEPT:
                heapq.heappush(self._done, item)
            else:
                heapq.heappushpop(self._done, item)
                self.totals.not_listed += 1
        self.names_done(done)
        return [self._task(row, names, start_ticks, ns_per_tick, now) for row in going]

    def names_done(self, done: list[TaskRow]) -> None:
        """A finished task's name is not needed again (numbers are never reused)."""
        for row in done:
            self.names.pop(row[0], None)

    def clear(self) -> None:
        """History cleared (the live view's c): finished tasks forgotten, the totals restart
        (the replay restarts its tasks not finished at the same moment)."""
        self._done = []
        self.totals = TaskTotals()

    def snapshot_totals(self) -> TaskTotals:
        """The totals, with the going tasks the last live take left out as not listed."""
        out = self.totals.copy()
        out.going = self.going_total
        out.not_listed += self.going_cut
        return out

    def finished(self) -> list[AsyncTask]:
        """The finished tasks kept, in the order they started."""
        return sorted((t for _, _, t in self._done), key=lambda t: t.number)


MAX_TASKS_LISTED = 1000  # tasks still going listed in the JSON (the longest-lived); more are counted


def tasks_listed(tasks: Iterable[AsyncTask]) -> tuple[list[AsyncTask], int]:
    """The tasks a report lists: those still going (at most MAX_TASKS_LISTED,
    the longest-lived), then the finished ones, each by start; and how many
    going ones were left out."""
    going = [t for t in tasks if t.state in ("running", "waiting")]
    finished = [t for t in tasks if t.state not in ("running", "waiting")]
    cut = max(len(going) - MAX_TASKS_LISTED, 0)
    if cut:
        going = sorted(going, key=lambda t: -(t.running_ns + t.waiting_ns))[:MAX_TASKS_LISTED]
    key = lambda t: (t.pid, t.number)  # noqa: E731
    return sorted(going, key=key) + sorted(finished, key=key), cut


def task_words(t: AsyncTask) -> str:
    """'waiting in sleep <- pause' / 'running' / 'done': a task's state as a line says it."""
    if t.state == "waiting" and t.awaiting:
        return "waiting in " + " <- ".join(t.awaiting[:4])
    return t.state
