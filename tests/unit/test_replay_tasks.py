"""Tasks in the C replay (aggregate.h "Tasks", tasktable.h): hand-made
streams with known answers.  Ticks are nanoseconds here."""

from __future__ import annotations

from typing import NamedTuple

from ulma import _core
from ulma.format import records
from ulma.format.records import Event

CALL, RETURN, YIELD, RESUME, THROW, UNWIND = (records.CALL, records.RETURN, records.YIELD, records.RESUME,
                                              records.THROW, records.UNWIND)
TASK, NEW, END = records.TASK, records.TASKF_NEW, records.TASKF_END
AWAIT, CPU = records.EVF_AWAIT, records.CPU_SAMPLE
SYNC, SYNC_BEGIN, SYNC_FRAME = records.SYNC, records.SYNC_BEGIN, records.SYNC_FRAME
RUNNING, WAITING, DONE, FAILED = 1, 2, 3, 4
RUN = 9  # Handle._run: a plain function, the task's step under it is C (no record)


def ev(t: int, fid: int, kind: int, flags: int = 0) -> Event:
    return Event(t, fid, kind, flags, 0)


def task(t: int, number: int, flags: int = 0) -> Event:
    return Event(t, number, TASK, flags, 0)


class Task(NamedTuple):
    coro: int
    thread: int
    state: int
    first: int
    since: int
    steps: int
    running: int
    waiting: int
    awaiting: tuple[int, ...]


def tasks_of(*streams: list[Event], close: bool = True) -> dict[int, Task]:
    """number -> the task's figures, done or going; one stream per thread."""
    agg = _core.Aggregator()
    agg.set_rate(1.0)
    for thread, events in enumerate(streams):
        agg.feed(thread, records.encode(events))
    if close:
        agg.close()
    done, going, _, _ = agg.take_tasks(True)
    return {row[0]: Task(*row[1:]) for row in (*done, *going)}


def step(t0: int, t1: int, number: int, coro: int, start: int = RESUME, end: int = YIELD,
         flags: int = 0, inner: tuple[int, ...] = ()) -> list[Event]:
    """Handle._run running one step of a task from t0 to t1; the step ends with the inner
    coroutines yielding first, innermost first."""
    out = [ev(t0, RUN, CALL), task(t0 + 1, number, flags), ev(t0 + 1, coro, start, AWAIT)]
    out += [ev(t1 - 1, c, CALL, AWAIT) for c in reversed(inner)]
    out += [ev(t1 - 1, c, YIELD, AWAIT) for c in inner]
    out += [task(t1, number, END), ev(t1, coro, end, AWAIT), ev(t1 + 1, RUN, RETURN)]
    return out


def test_two_tasks_of_one_coroutine_function_keep_their_own_steps_running_and_waiting() -> None:
    # tasks 1 and 2 both run coroutine 5, interleaved: 1 runs 100 + 50, 2 runs 30 + 30 + 30
    stream = (step(0, 100, 1, 5, CALL, flags=NEW) + step(200, 230, 2, 5, CALL, flags=NEW)
              + step(400, 430, 2, 5) + step(600, 650, 1, 5, end=RETURN) + step(700, 730, 2, 5, end=RETURN))
    one, two = tasks_of(stream).values()
    assert (one.coro, one.state, one.steps, one.first, one.since) == (5, DONE, 2, 1, 650)
    assert one.running == (100 - 1) + (650 - 601) and one.waiting == 601 - 100
    assert (two.coro, two.state, two.steps) == (5, DONE, 3)
    assert two.running == 3 * 29 and two.waiting == (401 - 230) + (701 - 430)


def test_a_suspended_task_says_the_coroutines_it_sits_in_innermost_first_and_waits_until_now() -> None:
    # task 3 (coroutine 5) awaits 6, which awaits 7 (sleep), when its step ends
    stream = step(0, 100, 3, 5, CALL, flags=NEW, inner=(7, 6))
    t = tasks_of(stream, close=False)[3]
    assert t.state == WAITING and t.awaiting == (7, 6) and t.since == 100
    assert t.waiting == 0 and t.running == 99
    # (the monitor adds now - since to a waiting task's figure when it shows it: eventloop.TaskWatch)


def test_an_unwind_leaves_a_task_failed_and_a_throw_starts_a_step() -> None:
    stream = step(0, 10, 4, 5, CALL, flags=NEW) + step(50, 60, 4, 5, THROW, UNWIND)
    t = tasks_of(stream)[4]
    assert t.state == FAILED and t.steps == 2 and t.waiting == 51 - 10 and t.running == 9 + 9


def test_a_task_runs_its_steps_on_the_thread_that_ran_the_last_one() -> None:
    got = tasks_of(step(0, 10, 1, 5, CALL, flags=NEW), step(100, 110, 1, 5, end=RETURN))
    assert got[1].thread == 1 and got[1].steps == 2  # thread 1 ran the last step


def test_a_cpu_reading_before_a_task_record_changes_nothing() -> None:
    # the agent writes a reading (when one is due) before the TASK record and its event, never between
    stream = [ev(0, RUN, CALL), Event(1, 1000, CPU, 0, 0), task(1, 1, NEW), ev(2, 5, CALL, AWAIT),
              Event(50, 1040, CPU, 0, 0), task(50, 1, END), ev(51, 5, RETURN, AWAIT), ev(52, RUN, RETURN)]
    t = tasks_of(stream)[1]
    assert (t.coro, t.state, t.steps, t.running) == (5, DONE, 1, 51 - 2)


def test_a_task_record_whose_event_is_not_right_after_it_is_ignored() -> None:
    # damaged: a reading, or a restatement, between the record and the coroutine's event
    reading = [ev(0, RUN, CALL), task(1, 1, NEW), Event(1, 1000, CPU, 0, 0), ev(2, 5, CALL, AWAIT),
               ev(3, 5, RETURN, AWAIT)]
    restated = [ev(0, RUN, CALL), task(1, 1, NEW), Event(1, 0, SYNC, SYNC_BEGIN, 1),
                Event(1, RUN, SYNC, SYNC_FRAME, 0), ev(2, 5, CALL, AWAIT), ev(3, 5, RETURN, AWAIT)]
    assert tasks_of(reading) == {} and tasks_of(restated) == {}


def test_a_task_record_says_whether_the_step_starts_or_ends_and_another_event_is_not_taken() -> None:
    # damaged: a record for a step's start followed by a coroutine's yield, one for an end by a resume
    starts = [ev(0, RUN, CALL), task(1, 1, NEW), ev(2, 5, YIELD, AWAIT)]
    ends = [*step(0, 10, 2, 5, CALL, flags=NEW), ev(20, RUN, CALL), task(21, 2, END),
            ev(22, 5, RESUME, AWAIT)]
    assert tasks_of(starts) == {}
    t = tasks_of(ends, close=False)[2]
    assert (t.state, t.steps, t.since) == (WAITING, 1, 10)  # the resume did not start a step


def test_a_task_record_not_followed_by_a_coroutines_event_is_ignored() -> None:
    # damaged: the record is followed by a plain function's call, then its real step
    stream = [ev(0, RUN, CALL), task(1, 1, NEW), ev(2, 8, CALL), ev(3, 8, RETURN), ev(4, RUN, RETURN)]
    assert tasks_of(stream) == {}


def test_a_task_still_in_its_step_when_its_thread_ends_stops_running_there() -> None:
    stream = [ev(0, RUN, CALL), task(1, 1, NEW), ev(2, 5, CALL, AWAIT), ev(40, 8, CALL), ev(90, 8, RETURN)]
    t = tasks_of(stream)[1]
    assert t.state == WAITING and t.running == 90 - 2 and t.since == 90


def test_a_crafted_stream_of_tasks_that_never_end_is_kept_to_a_bound_and_the_rest_counted() -> None:
    agg = _core.Aggregator()
    agg.set_rate(1.0)
    limit = _core.LIMITS["MAX_TASKS"]
    n = limit + 1000
    chunk = []
    for number in range(1, n + 1):
        chunk += [task(number, number, NEW), ev(number, 5, CALL, AWAIT)]
        if len(chunk) >= 200_000:
            agg.feed(0, records.encode(chunk))
            chunk = []
    agg.feed(0, records.encode(chunk))
    # the tasks not kept step again: counted once each, at their first record
    again = []
    for number in range(limit + 1, n + 1):
        again += [task(n + number, number, END), ev(n + number, 5, YIELD, AWAIT),
                  task(n + number, number), ev(n + number, 5, RESUME, AWAIT)]
    agg.feed(0, records.encode(again))
    done, going, over, total = agg.take_tasks(True)
    assert done == [] and len(going) == total == limit and over == 1000


def test_finished_tasks_are_handed_over_once_and_going_ones_stay() -> None:
    agg = _core.Aggregator()
    agg.set_rate(1.0)
    agg.feed(0, records.encode(step(0, 10, 1, 5, CALL, flags=NEW, end=RETURN)
                               + step(20, 30, 2, 5, CALL, flags=NEW)))
    done, going, _, total = agg.take_tasks(True)
    assert [r[0] for r in done] == [1] and [r[0] for r in going] == [2] and total == 1
    done, going, _, _ = agg.take_tasks(False)
    assert done == [] and going == []
    agg.feed(0, records.encode(step(40, 50, 2, 5, end=RETURN)))
    done, going, _, _ = agg.take_tasks(True)
    assert [(r[0], r[6]) for r in done] == [(2, 2)] and going == []


def test_a_live_take_lists_the_longest_lived_tasks_going_first_up_to_its_limit() -> None:
    agg = _core.Aggregator()
    agg.set_rate(1.0)
    # tasks 7, 3, 9 start in that order; 3 ends
    agg.feed(0, records.encode(step(0, 10, 7, 5, CALL, flags=NEW) + step(20, 30, 3, 5, CALL, flags=NEW)
                               + step(40, 50, 9, 5, CALL, flags=NEW) + step(60, 70, 3, 5, end=RETURN)))
    done, going, _, total = agg.take_tasks(True, 1)
    assert [r[0] for r in done] == [3] and [r[0] for r in going] == [7] and total == 2
