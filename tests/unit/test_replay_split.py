"""The four-way split rules of the C replay (aggregate.h), on hand-made
streams with known answers.  Ticks are nanoseconds here (set_rate(1.0))."""

from __future__ import annotations

from typing import NamedTuple

from ulma import _core
from ulma.format import records
from ulma.format.records import Event

CALL, RETURN, C_CALL, C_RETURN = records.CALL, records.RETURN, records.C_CALL, records.C_RETURN
CPU, RUN_DELAY = records.CPU_SAMPLE, records.CPU_RUN_DELAY
SYNC, BEGIN, FRAME = records.SYNC, records.SYNC_BEGIN, records.SYNC_FRAME
UNMEASURED, DISPATCH, AWAIT = records.EVF_UNMEASURED, records.EVF_DISPATCH, records.EVF_AWAIT
YIELD, RESUME, THROW, UNWIND = records.YIELD, records.RESUME, records.THROW, records.UNWIND


class Split(NamedTuple):
    calls: int
    resumes: int
    self: int
    total: int
    self_wait: int
    self_runnable: int
    self_probe: int
    self_dispatch: int
    self_segs: int
    wait: int
    runnable: int
    probe: int
    dispatch: int
    segs: int
    unmeasured: int
    dispatch_in: int
    self_await: int
    await_: int
    coro_calls: int
    self_bsegs: int
    self_esegs: int
    bsegs: int
    esegs: int


def ev(t: int, fid: int, kind: int, flags: int = 0, aux: int = 0) -> Event:
    return Event(t, fid, kind, flags, aux)


def cpu(t: int, ns: int, flags: int = 0) -> Event:
    """A CPU reading carrying `ns` in id (low 32 bits) and aux (high 16)."""
    return Event(t, ns & 0xFFFFFFFF, CPU, flags, ns >> 32)


def replay(events: list[Event], *, now: int = 0) -> dict[int, Split]:
    agg = _core.Aggregator()
    agg.set_rate(1.0)
    agg.feed(0, records.encode(events))
    if not now:
        agg.close()
    funcs, _, _, _ = agg.snapshot(now=now, split=True)
    return {f[0]: Split(*f[1:]) for f in funcs}


def test_off_cpu_time_of_an_interval_goes_to_the_function_on_top_at_the_reading() -> None:
    # main(1) calls sleeper(2), which blocks 1000 ns of its 1100 (100 ns of CPU)
    funcs = replay([ev(0, 1, CALL), cpu(0, 5000), ev(2, 2, CALL),
                    cpu(1102, 5100), ev(1110, 2, RETURN), ev(1200, 1, RETURN)])
    sleeper, main = funcs[2], funcs[1]
    assert sleeper.self_wait == 1002 and sleeper.wait == 1002  # wall 1102 - CPU 100
    assert main.self_wait == 0 and main.wait == 1002  # inclusive: its callee waited
    # the gap after a reading is the reading's own cost: probe time, not a probe count
    assert sleeper.self_probe == 8 and sleeper.self_segs == 1


def test_a_readings_cost_is_capped_a_longer_gap_is_the_functions_own_time() -> None:
    # the thread lost the CPU during the reading: 1 ms of gap, of which only 50 us can be the reading
    funcs = replay([ev(0, 1, CALL), cpu(0, 0), ev(0, 1, RETURN), ev(10, 2, CALL),
                    cpu(200_000, 150_000), ev(1_200_000, 2, RETURN)])
    assert funcs[2].self_probe == 50_000 and funcs[2].self == 1_200_000 - 10


def test_a_reading_before_any_baseline_attributes_nothing() -> None:
    funcs = replay([ev(0, 1, CALL), cpu(50, 10), ev(60, 1, RETURN)])
    assert funcs[1].wait == 0


def test_cpu_above_wall_is_no_negative_wait() -> None:
    funcs = replay([ev(0, 1, CALL), cpu(0, 0), cpu(100, 150), ev(110, 1, RETURN)])
    assert funcs[1].self_wait == 0


def test_cpu_values_wrap_at_48_bits() -> None:
    top = (1 << 48) - 50
    funcs = replay([ev(0, 1, CALL), cpu(0, top), cpu(1000, 50), ev(1001, 1, RETURN)])
    assert funcs[1].self_wait == 1000 - 100


def test_run_delay_splits_the_wait_into_runnable_and_capped_by_it() -> None:
    # baseline run delay 1000; at the reading 300 more, of a 700 ns wait
    funcs = replay([ev(0, 1, CALL), cpu(0, 0), cpu(0, 1000, RUN_DELAY),
                    cpu(1000, 300), cpu(1000, 1300, RUN_DELAY), ev(1001, 1, RETURN)])
    assert (funcs[1].self_wait, funcs[1].self_runnable, funcs[1].runnable) == (700, 300, 300)
    # a run delay larger than the interval's wait (earlier short waits) is capped
    funcs = replay([ev(0, 1, CALL), cpu(0, 0), cpu(0, 0, RUN_DELAY),
                    cpu(1000, 900), cpu(1000, 5000, RUN_DELAY), ev(1001, 1, RETURN)])
    assert (funcs[1].self_wait, funcs[1].self_runnable) == (100, 100)


def test_a_thread_that_never_blocked_was_waiting_for_a_cpu_all_its_off_cpu_time() -> None:
    # 700 ns off CPU, no run delay counted (a hypervisor took the CPU), no voluntary switch
    funcs = replay([ev(0, 1, CALL), cpu(0, 0), cpu(0, 1000, RUN_DELAY),
                    cpu(1000, 300), cpu(1000, 1000, RUN_DELAY | records.CPU_NO_BLOCK), ev(1001, 1, RETURN)])
    assert (funcs[1].self_wait, funcs[1].self_runnable) == (700, 700)
    # the same with a voluntary switch: blocked, as the run delay says nothing of it
    funcs = replay([ev(0, 1, CALL), cpu(0, 0), cpu(0, 1000, RUN_DELAY),
                    cpu(1000, 300), cpu(1000, 1000, RUN_DELAY), ev(1001, 1, RETURN)])
    assert (funcs[1].self_wait, funcs[1].self_runnable) == (700, 0)


def test_each_gap_between_records_counts_one_probe_for_the_function_on_top() -> None:
    # main: [0,10] own, leaf [10,20], [20,30] own -> main 2 gaps, leaf 1; inclusive main 3
    funcs = replay([ev(0, 1, CALL), ev(10, 2, CALL), ev(20, 2, RETURN), ev(30, 1, RETURN)])
    assert (funcs[1].self_segs, funcs[1].segs) == (2, 3)
    assert (funcs[2].self_segs, funcs[2].segs) == (1, 1)


def test_native_scopes_nest_marks_are_instants_and_the_gaps_native_records_close_are_counted_apart(
) -> None:
    # main(1) [0..60] -> scope(2) [10..40] -> cb(3) [20..30]; a mark(4) at 50, a counter's two
    # records at 55 (the second closes no gap)
    SB, SE, MARK, COUNTER = records.SCOPE_BEGIN, records.SCOPE_END, records.MARK, records.COUNTER
    funcs = replay([ev(0, 1, CALL), ev(10, 2, SB), ev(20, 3, CALL), ev(30, 3, RETURN), ev(40, 2, SE),
                    ev(50, 4, MARK), ev(55, 5, COUNTER), ev(55, 7, COUNTER, records.COUNTER_VALUE),
                    ev(60, 1, RETURN)])
    assert (funcs[2].calls, funcs[2].total, funcs[2].self) == (1, 30, 20)
    assert (funcs[1].total, funcs[1].self) == (60, 30)
    assert 5 not in funcs and 7 not in funcs  # counters are no frames ...
    assert (funcs[4].calls, funcs[4].total) == (1, 0)  # ... a mark is one of no length
    # main's own gaps: closed by the scope's begin, the mark and the counter (native begins), and
    # by its own return; the scope's: by cb's call (Python) and by its own end
    assert (funcs[1].self_segs, funcs[1].self_bsegs, funcs[1].self_esegs) == (1, 3, 0)
    assert (funcs[2].self_segs, funcs[2].self_bsegs, funcs[2].self_esegs) == (1, 0, 1)
    assert (funcs[3].self_segs, funcs[3].self_bsegs, funcs[3].self_esegs) == (1, 0, 0)


def test_dispatch_is_the_callers_overhead_and_the_callees_call_overhead() -> None:
    # leaf's CALL says it took 7 ticks from the CALL instruction to its first one
    funcs = replay([ev(0, 1, CALL), ev(20, 2, CALL, DISPATCH, 7), ev(30, 2, RETURN), ev(40, 1, RETURN)])
    assert (funcs[1].self_dispatch, funcs[1].dispatch, funcs[1].dispatch_in) == (7, 7, 0)
    assert (funcs[2].self_dispatch, funcs[2].dispatch_in) == (0, 7)


def test_dispatch_never_exceeds_the_callers_last_gap() -> None:
    funcs = replay([ev(0, 1, CALL), ev(5, 2, CALL, DISPATCH, 900), ev(30, 2, RETURN), ev(40, 1, RETURN)])
    assert funcs[1].self_dispatch == 5


def test_an_excluded_function_is_unmeasured_for_its_callers_but_its_traced_callees_are_not() -> None:
    # main(1) -> excluded(2) [10..110] -> traced(3) [40..70]
    funcs = replay([ev(0, 1, CALL), ev(10, 2, CALL, UNMEASURED), ev(40, 3, CALL), ev(70, 3, RETURN),
                    ev(110, 2, RETURN), ev(120, 1, RETURN)])
    assert funcs[1].unmeasured == 100 - 30
    assert funcs[3].unmeasured == 0 and funcs[3].total == 30
    # no probe counts or waits for time inside the excluded frame's own code
    assert funcs[1].segs == 2 + 1  # main's own two gaps and traced's one


def test_no_wait_is_credited_while_an_excluded_function_is_on_top() -> None:
    funcs = replay([ev(0, 1, CALL), cpu(0, 0), ev(10, 2, CALL, UNMEASURED), cpu(1010, 10),
                    ev(1010, 2, RETURN), ev(1020, 1, RETURN)])
    assert funcs[1].wait == 0 and funcs[1].unmeasured == 1000


def test_c_calls_push_and_pop_like_python_calls() -> None:
    funcs = replay([ev(0, 1, CALL), ev(10, 9, C_CALL), ev(50, 9, C_RETURN), ev(60, 1, RETURN)])
    assert funcs[9][:4] == (1, 0, 40, 40)
    assert funcs[1][:4] == (1, 0, 20, 60)


def test_a_sync_after_drops_starts_a_new_cpu_baseline() -> None:
    # 1000 ns lost: the reading after the sync must not turn the gap into waiting
    funcs = replay([ev(0, 1, CALL), cpu(0, 0), ev(10, 2, CALL),
                    ev(2000, 0, SYNC, BEGIN | records.SYNC_AFTER_DROP, 1), ev(2000, 1, SYNC, FRAME),
                    cpu(2000, 100), ev(2001, 1, RETURN)])
    assert funcs[1].wait == 0 and funcs[2].wait == 0


def test_open_frames_carry_their_split_so_far_in_a_live_snapshot() -> None:
    agg = _core.Aggregator()
    agg.set_rate(1.0)
    agg.feed(0, records.encode([ev(0, 1, CALL), cpu(0, 0), cpu(1000, 100), ev(1001, 2, CALL)]))
    funcs = {f[0]: Split(*f[1:]) for f in agg.snapshot(now=2000, split=True)[0]}
    assert funcs[1].self_wait == 900 and funcs[1].wait == 900  # still open: inclusive so far
    assert funcs[1].total == 2000 and funcs[2].total == 999


# ---- coroutines (aggregate.h, "Coroutines"): a YIELD flagged AWAIT suspends until the next RESUME


def test_a_coroutines_time_suspended_in_await_is_its_waiting_even_with_instances_interleaved() -> None:
    # two instances of coroutine 1, suspended over each other, resumed in the other order
    funcs = replay([ev(0, 1, CALL, AWAIT), ev(10, 1, YIELD, AWAIT),
                    ev(20, 1, CALL, AWAIT), ev(30, 1, YIELD, AWAIT),
                    ev(100, 1, RESUME, AWAIT), ev(110, 1, RETURN, AWAIT),
                    ev(200, 1, RESUME, AWAIT), ev(205, 1, RETURN, AWAIT)])
    a = funcs[1]
    assert (a.calls, a.resumes, a.coro_calls) == (2, 2, 2)
    assert a.await_ == (100 - 10) + (200 - 30) and a.self_await == a.await_  # whichever paired with which
    assert a.total == 35 + a.await_ and a.self == a.total  # running 10 + 10 + 10 + 5, and the awaits
    assert a.wait == a.await_ and a.self_wait == a.await_


def test_a_coroutine_awaiting_another_waits_in_its_total_the_awaited_one_in_its_self_time() -> None:
    # P (1) awaits C (2), which awaits a future: C yields first, then P; P resumes first, then C
    agg = _core.Aggregator()
    agg.set_rate(1.0)
    agg.feed(0, records.encode([ev(0, 1, CALL, AWAIT), ev(5, 2, CALL, AWAIT), ev(10, 2, YIELD, AWAIT),
                                ev(12, 1, YIELD, AWAIT), ev(100, 1, RESUME, AWAIT), ev(102, 2, RESUME, AWAIT),
                                ev(110, 2, RETURN, AWAIT), ev(115, 1, RETURN, AWAIT)]))
    agg.close()
    rows, edges, _, _ = agg.snapshot(split=True)
    funcs = {f[0]: Split(*f[1:]) for f in rows}
    p, c = funcs[1], funcs[2]
    assert c.await_ == 92 and c.self_await == 92 and c.total == 5 + 8 + 92
    assert p.await_ == 88 and p.self_await == 0  # it waited for C, whose waiting that is
    assert p.total == 115 and p.self == 12 + 15 - 13  # wall; self: its frames less C's (5 + 8)
    (edge,) = [e for e in edges if e[:2] == (1, 2)]
    assert edge[4] == 13 + 88  # C's frames under P, and P's time awaiting C


def test_a_generators_yield_is_no_waiting() -> None:
    funcs = replay([ev(0, 1, CALL), ev(10, 2, CALL), ev(20, 2, YIELD), ev(500, 2, RESUME),
                    ev(510, 2, RETURN), ev(600, 1, RETURN)])
    assert funcs[2].await_ == 0 and funcs[2].total == 20 and funcs[2].coro_calls == 0


def test_a_coroutine_suspended_now_waits_up_to_now_live_and_until_its_threads_end() -> None:
    stream = [ev(0, 1, CALL, AWAIT), ev(10, 1, YIELD, AWAIT), ev(40, 2, CALL), ev(60, 2, RETURN)]
    assert replay(stream, now=100)[1].await_ == 90
    assert replay(stream)[1].await_ == 50  # closed at the thread's last tick


def test_a_resumption_without_a_suspension_seen_counts_nothing() -> None:
    # resumed in this thread, suspended in another (or its YIELD dropped): never a bare tick
    funcs = replay([ev(1_000_000, 1, RESUME, AWAIT), ev(1_000_010, 1, RETURN, AWAIT)])
    assert funcs[1].await_ == 0 and funcs[1].total == 10


def test_a_throw_into_a_suspended_coroutine_ends_its_wait() -> None:
    funcs = replay([ev(0, 1, CALL, AWAIT), ev(10, 1, YIELD, AWAIT), ev(70, 1, THROW, AWAIT),
                    ev(75, 1, UNWIND, AWAIT), ev(500, 2, CALL), ev(501, 2, RETURN)])
    assert funcs[1].await_ == 60 and funcs[1].total == 75


# ---- a watched function's long frames (asyncio's Handle._run: the loop held too long)


def blocks_of(events: list[Event], watch: int, limit: int) -> list[tuple[int, int, tuple[int, ...]]]:
    agg = _core.Aggregator()
    agg.set_rate(1.0)
    agg.watch(watch, limit)
    agg.feed(0, records.encode(events))
    agg.close()
    got, more = agg.take_blocks()
    assert more == 0
    return [(start, ticks, ids) for _, start, ticks, ids in got]


def test_a_watched_frame_past_the_limit_is_kept_with_the_stack_as_it_passed_it() -> None:
    # run_once(1) -> Handle._run(5) -> step(6) -> block(7) for 500 ticks; limit 100
    events = [ev(0, 1, CALL), ev(10, 5, CALL), ev(20, 6, CALL), ev(30, 7, CALL), ev(530, 7, RETURN),
              ev(540, 6, RETURN), ev(550, 5, RETURN),
              ev(600, 5, CALL), ev(650, 5, RETURN),  # 50 ticks: under the limit
              ev(700, 1, RETURN)]
    assert blocks_of(events, 5, 100) == [(10, 540, (5, 6, 7))]
    assert blocks_of(events, 5, 1000) == []
    assert blocks_of(events, 0, 100) == []  # nothing watched


def test_a_watched_frame_that_no_record_interrupts_is_kept_alone_and_one_cut_by_a_sync_ends_there() -> None:
    # no record between its call and its return: the frame alone
    assert blocks_of([ev(0, 5, CALL), ev(400, 5, RETURN), ev(410, 1, CALL)], 5, 100) == [(0, 400, (5,))]
    # events lost: the restatement closes the stack at the last tick before it
    got = blocks_of([ev(0, 5, CALL), ev(10, 6, CALL), ev(300, 6, RETURN),
                     ev(5000, 0, SYNC, BEGIN | records.SYNC_AFTER_DROP, 1), ev(5000, 1, SYNC, FRAME),
                     ev(5001, 1, RETURN)], 5, 100)
    assert got == [(0, 300, (5, 6))]  # at the first record past the limit its callee was still on top
