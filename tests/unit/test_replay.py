"""The C replay follows its rules exactly: checked on hand-made streams with
known answers, and against a slow Python model on generated streams."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from tests.unit.replay_model import ThreadModel, counters, snapshot
from ulma import _core
from ulma.format import records
from ulma.format.records import Event

CALL, RETURN, YIELD, RESUME = records.CALL, records.RETURN, records.YIELD, records.RESUME
SYNC, BEGIN, FRAME = records.SYNC, records.SYNC_BEGIN, records.SYNC_FRAME


def replay(*threads: list[Event], now: int = 0) -> tuple[dict[int, tuple[int, ...]], list[tuple[int, ...]]]:
    agg = _core.Aggregator()
    for i, events in enumerate(threads):
        agg.feed(i, records.encode(events))
    if not now:
        agg.close()
    funcs, edges, _, _ = agg.snapshot(now=now)
    return {f[0]: f[1:] for f in funcs}, sorted(edges)


def ev(t: int, fid: int, kind: int, flags: int = 0, aux: int = 0) -> Event:
    return Event(t, fid, kind, flags, aux)


def test_a_tick_far_past_the_threads_first_is_damage_and_sums_over_threads_stay_ordered() -> None:
    # a crafted trace: a call at the last tick there is (2^64 - 1) would make its frame 2^64 ticks
    # long and its sums wrap around; it is taken as the last tick before it
    funcs, _ = replay([ev(0, 1, CALL), ev(10, 2, CALL), ev((1 << 64) - 1, 1, CALL)])
    assert funcs[1][2:4] == (10, 10) and funcs[2][2:4] == (0, 0)  # (self, total): nothing wrapped
    # five threads each 2^62 - 1 ticks long add up past 2^64: the sums stop there, self <= total
    far = (1 << 62) - 1
    funcs, _ = replay(*[[ev(0, 1, CALL), ev(far, 1, RETURN)] for _ in range(5)])
    calls, _resumes, self_t, total = funcs[1][:4]
    assert calls == 5 and self_t == total == (1 << 64) - 1


def test_self_and_total_of_a_call_tree_are_exact() -> None:
    # main(1) [0..100] calls work(2) [10..70], which calls leaf(3) [20..30]
    funcs, edges = replay([ev(0, 1, CALL), ev(10, 2, CALL), ev(20, 3, CALL), ev(30, 3, RETURN),
                           ev(70, 2, RETURN), ev(100, 1, RETURN)])
    assert funcs == {1: (1, 0, 40, 100), 2: (1, 0, 50, 60), 3: (1, 0, 10, 10)}
    assert edges == [(1, 2, 1, 0, 60), (2, 3, 1, 0, 10)]


def test_recursion_counts_total_once_and_self_per_frame() -> None:
    # f -> f -> f, each inner call nested: total is the outermost span only
    funcs, edges = replay([ev(0, 7, CALL), ev(10, 7, CALL), ev(20, 7, CALL), ev(25, 7, RETURN),
                           ev(40, 7, RETURN), ev(100, 7, RETURN)])
    assert funcs == {7: (3, 0, 100, 100)}
    assert edges == [(7, 7, 2, 0, 30)]  # the outermost f->f edge spans 10..40


def test_generator_is_called_once_and_resumed_per_next() -> None:
    # caller 1 runs gen 2 three times: a call, then two resumes
    funcs, _ = replay([ev(0, 1, CALL), ev(1, 2, CALL), ev(3, 2, YIELD), ev(5, 2, RESUME),
                       ev(8, 2, YIELD), ev(9, 2, RESUME), ev(10, 2, RETURN), ev(20, 1, RETURN)])
    assert funcs[2] == (1, 2, 6, 6)
    assert funcs[1] == (1, 0, 14, 20)


def test_a_sync_after_drops_closes_the_stack_and_counts_the_gap_as_lost() -> None:
    agg = _core.Aggregator()
    agg.feed(0, records.encode([
        ev(0, 1, CALL), ev(10, 2, CALL),  # then events were dropped ...
        ev(50, 0, SYNC, BEGIN | records.SYNC_AFTER_DROP, 2), ev(50, 1, SYNC, FRAME),
        ev(50, 3, SYNC, FRAME), ev(60, 3, RETURN), ev(80, 1, RETURN)]))
    agg.close()
    funcs = {f[0]: f[1:] for f in agg.snapshot()[0]}
    # 1 ran 0..10 and 50..80: self 10 + 20 (3 took 10 of it); the 40-tick gap is nobody's
    assert funcs[1] == (1, 0, 30, 10 + 30)
    assert funcs[2] == (1, 0, 0, 0)
    assert funcs[3] == (0, 0, 10, 10)  # restated by the sync: no call was seen
    assert agg.threads()[0]["lost_ticks"] == 40


def test_a_return_without_its_call_is_counted_not_credited() -> None:
    agg = _core.Aggregator()
    agg.feed(0, records.encode([ev(0, 5, RETURN), ev(1, 1, CALL), ev(9, 1, RETURN)]))
    agg.close()
    assert {f[0]: f[1:] for f in agg.snapshot()[0]} == {1: (1, 0, 8, 8)}
    assert agg.threads()[0]["unmatched"] == 1


def test_open_frames_count_up_to_now_in_a_live_snapshot() -> None:
    funcs, edges = replay([ev(0, 1, CALL), ev(10, 2, CALL)], now=30)
    assert funcs == {1: (1, 0, 10, 30), 2: (1, 0, 20, 20)}
    assert edges == [(1, 2, 1, 0, 20)]


def test_feeding_a_partial_record_is_refused() -> None:
    agg = _core.Aggregator()
    try:
        agg.feed(0, b"\0" * 17)
    except ValueError as exc:
        assert "16 bytes" in str(exc)
    else:
        raise AssertionError("a 17-byte buffer was accepted")


kinds = st.sampled_from([CALL, RETURN, records.UNWIND, YIELD, RESUME, records.THROW, SYNC,
                         records.MARK, records.SCOPE_BEGIN, records.SCOPE_END, records.COUNTER, 0, 200])
event_lists = st.lists(
    st.builds(lambda dt, fid, kind, flags, aux: (dt, fid, kind, flags, aux),
              st.integers(0, 50), st.integers(0, 6) | st.just((1 << 24) + 1), kinds,
              st.sampled_from([0, BEGIN, FRAME, BEGIN | records.SYNC_AFTER_DROP, 0xFF, records.EVF_AWAIT]),
              st.integers(0, 3)),
    max_size=120)


def to_events(raw: list[tuple[int, int, int, int, int]], start: int) -> list[Event]:
    t, out = start, []
    for dt, fid, kind, flags, aux in raw:
        t = max(t + dt - 10, 0)  # some ticks go backwards: the replay must clamp them
        out.append(Event(t, fid, kind, flags, aux))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(event_lists, min_size=1, max_size=3), st.integers(0, 1000), st.booleans())
def test_c_replay_matches_the_python_model(raws: list[list[tuple[int, int, int, int, int]]],
                                          start: int, live: bool) -> None:
    streams = [to_events(raw, start) for raw in raws]
    models = []
    agg = _core.Aggregator()
    for i, events in enumerate(streams):
        m = ThreadModel()
        m.feed(events)
        models.append(m)
        # fed in two pieces: where a drain cuts the stream must not matter
        cut = len(events) // 2
        agg.feed(i, records.encode(events[:cut]))
        agg.feed(i, records.encode(events[cut:]))
    now = 0
    if live:
        now = max((m.last for m in models), default=0) + 5
    else:
        agg.close()
        for m in models:
            m.close()
    c_funcs, c_edges, c_counters, _ = agg.snapshot(now=now)
    assert (sorted(c_funcs), sorted(c_edges)) == snapshot(models, now)
    assert sorted(c_counters) == counters(models)
    for m, figures in zip(models, agg.threads(), strict=True):
        assert (figures["events"], figures["unmatched"], figures["lost_ticks"]) == (
            m.events, m.unmatched, m.lost)


def counter_records(site: int, value: int, t: int) -> list[Event]:
    """A counter's value as ulma.h writes it (records.h): two records of the same tick."""
    bits = value & ((1 << 60) - 1)
    return [Event(t, site, records.COUNTER, 0, bits >> 44),
            Event(t, bits & 0xFFFFFFF, records.COUNTER, records.COUNTER_VALUE, bits >> 28 & 0xFFFF)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(1, 3), st.integers(-(1 << 59), (1 << 59) - 1)),
                         max_size=30), min_size=1, max_size=3))
def test_a_counters_values_come_back_whole_from_every_thread(sets: list[list[tuple[int, int]]]) -> None:
    """What the program set (the values themselves, not a model of the replay): per site, how many,
    the last, least, most and mean, every thread's together."""
    agg = _core.Aggregator()
    t = 100
    for thread, pairs in enumerate(sets):
        events = [Event(t, 9, CALL, 0, 0)]
        for site, value in pairs:
            t += 7
            events += counter_records(site, value, t)
        events.append(Event(t + 1, 9, RETURN, 0, 0))
        agg.feed(thread, records.encode(events))
    agg.close()
    _funcs, _edges, rows, _ = agg.snapshot()
    got = {row[0]: row[1:] for row in rows}
    for site in {s for made in sets for s, _v in made}:
        values = [v for made in sets for s, v in made if s == site]  # ticks grow across the threads
        n, got_last, low, high, mean, _tick = got.pop(site)
        assert (n, got_last, low, high) == (len(values), values[-1], min(values), max(values))
        assert abs(mean - sum(values) / len(values)) <= 1e-9 * max(abs(low), abs(high), 1)
    assert not got  # no site that was never set
