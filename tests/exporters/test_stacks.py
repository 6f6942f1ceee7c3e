"""The exporters' C replay (``_core/replay.c``) follows the stack rules exactly: its frames are
the Python reference walker's (``tests/unit/replay_model.FrameWalk``), and they rebuild the
aggregator model's totals, on generated streams (drops, SYNC groups, unmatched exits, ticks
going back, ids past the limit) fed in pieces."""

from __future__ import annotations

import io
import itertools
import marshal
import random
from dataclasses import dataclass, field

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from tests.unit.replay_model import FrameWalk, ThreadModel, snapshot
from tests.unit.test_replay import event_lists, to_events
from ulma import _core
from ulma.exporters.chrome import us
from ulma.exporters.pstats import PstatsExporter
from ulma.format import records, runinfo, stacks
from ulma.format.records import Event

CALL, RETURN, YIELD, RESUME = records.CALL, records.RETURN, records.YIELD, records.RESUME


def make_run(hidden: frozenset[int] = frozenset()) -> runinfo.Run:
    frames = {fid: records.Symbol(fid, 1, records.SYMF_HIDDEN * (fid in hidden), f"f{fid}", "prog.py", fid)
              for fid in range(8)}
    return runinfo.Run(path="t.ulma", meta={}, end={}, frames=frames, ns_per_tick=1.0, start_ticks=0,
                      pid=1, os_tids={}, events={})


@dataclass
class Rebuild:
    """Totals rebuilt from the walker's transitions, in the model's shape; checks nesting on the way."""

    funcs: dict[int, list[int]] = field(default_factory=dict)  # calls, resumes, self, total
    edges: dict[tuple[int, int], list[int]] = field(default_factory=dict)  # calls, resumes, total
    active: dict[int, int] = field(default_factory=dict)
    edge_active: dict[tuple[int, int], int] = field(default_factory=dict)
    stack: list[tuple[int, int]] = field(default_factory=list)
    lost: int = 0
    last: int = -(1 << 62)

    def tick(self, t: int) -> None:
        assert t >= self.last, "time went backwards"
        self.last = t

    def enter(self, thread: int, t: int, fid: int, parent: int, kind: int) -> None:
        self.tick(t)
        assert parent == (self.stack[-1][0] if self.stack else -1)
        self.stack.append((fid, t))
        f = self.funcs.setdefault(fid, [0, 0, 0, 0])
        f[0] += kind in (CALL, records.C_CALL)  # (a native scope's or mark's entry is a C call's)
        f[1] += kind not in (0, CALL, records.C_CALL)
        self.active[fid] = self.active.get(fid, 0) + 1
        if parent >= 0:
            e = self.edges.setdefault((parent, fid), [0, 0, 0])
            e[0] += kind in (CALL, records.C_CALL)
            e[1] += kind not in (0, CALL, records.C_CALL)
            self.edge_active[(parent, fid)] = self.edge_active.get((parent, fid), 0) + 1

    def leave(self, thread: int, t: int, fid: int, parent: int, start: int, self_ns: int) -> None:
        self.tick(t)
        assert self.stack.pop() == (fid, start), "frames must close innermost first"
        assert parent == (self.stack[-1][0] if self.stack else -1)
        assert 0 <= self_ns <= t - start
        f = self.funcs[fid]
        f[2] += self_ns
        self.active[fid] -= 1
        if not self.active[fid]:
            f[3] += t - start
        if parent >= 0:
            self.edge_active[(parent, fid)] -= 1
            if not self.edge_active[(parent, fid)]:
                self.edges[(parent, fid)][2] += t - start

    def gap(self, thread: int, start: int, end: int) -> None:
        assert not self.stack
        self.lost += end - start


def walk(events: list[Event], sink: stacks.Sink | None, run: runinfo.Run,
         what: int = stacks.FRAMES) -> _core.Replay:
    """The C replay of one thread's events, fed in two pieces (where a chunk ends must not
    matter), its frames delivered to `sink`."""
    replay = _core.Replay(run.start_ticks, run.scale, what, run.hidden)
    cut = len(events) // 3
    for piece in (events[:cut], events[cut:]):
        replay.feed(0, records.encode(piece))
        if sink is not None:
            stacks.deliver(replay.take(), sink)
    replay.close()
    if sink is not None:
        stacks.deliver(replay.take(), sink)
    return replay


@dataclass
class Transitions:
    """Every call a sink gets, in order."""

    seen: list[tuple[int, ...]] = field(default_factory=list)

    def enter(self, thread: int, t: int, fid: int, parent: int, kind: int) -> None:
        self.seen.append((1, thread, t, fid, parent, kind))

    def leave(self, thread: int, t: int, fid: int, parent: int, start: int, self_ns: int) -> None:
        self.seen.append((2, thread, t, fid, parent, start, self_ns))

    def gap(self, thread: int, start: int, end: int) -> None:
        self.seen.append((3, thread, start, end))


# wider than the totals model's streams: calls into C, CPU readings, excluded frames, ids with
# the top bit set (a SYNC frame keeps its excluded flag there)
frame_event_lists = st.lists(
    st.builds(lambda dt, fid, kind, flags, aux: (dt, fid, kind, flags, aux),
              st.integers(0, 50),
              st.integers(0, 6) | st.sampled_from([(1 << 24) - 1, 1 << 24, (1 << 31) + 3, (1 << 32) - 1]),
              st.sampled_from([CALL, RETURN, records.UNWIND, YIELD, RESUME, records.THROW, records.C_CALL,
                               records.C_RETURN, records.CPU_SAMPLE, records.SYNC, 0, 200]),
              st.sampled_from([0, records.SYNC_BEGIN, records.SYNC_FRAME,
                               records.SYNC_BEGIN | records.SYNC_AFTER_DROP,
                               records.SYNC_FRAME | records.EVF_UNMEASURED, 0xFF]),
              st.integers(0, 3)),
    max_size=150)


@settings(max_examples=400, deadline=None)
@given(frame_event_lists, st.integers(0, 1000), st.sampled_from([0.5, 1.0, 3.3]), st.integers(0, 300),
       st.sampled_from([frozenset(), frozenset({2}), frozenset({1, 3})]))
def test_c_frames_are_the_reference_walkers(raw: list[tuple[int, int, int, int, int]], start: int,
                                            ns_per_tick: float, t0: int, hidden: frozenset[int]) -> None:
    events = to_events(raw, start)
    run = make_run(hidden)
    run.start_ticks, run.ns_per_tick = t0, ns_per_tick  # ticks before the start are clamped to it
    want = Transitions()
    model = FrameWalk(0, run, run.hidden)
    cut = len(events) // 2  # the model cut elsewhere: neither may care
    for piece in (events[:cut], events[cut:]):
        if piece:
            model.feed(memoryview(records.encode(piece)), want)
    model.close(want)
    got = Transitions()
    replay = walk(events, got, run)
    assert got.seen == want.seen
    (figures,) = replay.threads() if events else ({"events": 0, "unmatched": 0},)
    assert (figures["events"], figures["unmatched"]) == (model.events, model.unmatched)


@settings(max_examples=300, deadline=None)
@given(event_lists, st.integers(0, 1000))
def test_walker_transitions_rebuild_the_models_totals(raw: list[tuple[int, int, int, int, int]],
                                                      start: int) -> None:
    events = to_events(raw, start)
    model = ThreadModel()
    model.feed(events)
    model.close()
    sink = Rebuild()
    replay = walk(events, sink, make_run())
    funcs, edges = snapshot([model], awaits=False)
    got_funcs = sorted((fid, *f) for fid, f in sink.funcs.items() if any(f))
    got_edges = sorted((c, d, *e) for (c, d), e in sink.edges.items() if any(e))
    assert (got_funcs, got_edges) == (funcs, edges)
    figures = replay.threads()[0] if events else {"events": 0, "unmatched": 0}
    assert (figures["events"], figures["unmatched"], sink.lost) == (model.events, model.unmatched, model.lost)
    assert not sink.stack


@settings(max_examples=200, deadline=None)
@given(event_lists, st.integers(0, 1000))
def test_pstats_figures_are_the_models(raw: list[tuple[int, int, int, int, int]], start: int) -> None:
    events = to_events(raw, start)
    model = ThreadModel()
    model.feed(events)
    model.close()
    run = make_run()
    out = io.BytesIO()
    exporter = PstatsExporter(run, out)
    exporter.replayed(walk(events, None, run, stacks.PSTATS))
    exporter.finish()
    stats = marshal.loads(out.getvalue())
    funcs, edges = snapshot([model], awaits=False)
    want = {("prog.py", fid, f"f{fid}"): (calls + resumes, self_t / 1e9, total / 1e9)
            for fid, calls, resumes, self_t, total in funcs}
    got = {key: (nc, tt, ct) for key, (_cc, nc, tt, ct, _callers) in stats.items() if nc or tt or ct}
    assert got == want
    want_edges = {(c, d): (calls + resumes, total / 1e9) for c, d, calls, resumes, total in edges}
    got_edges = {(caller[1], callee[1]): (nc, ct) for callee, (*_f, callers) in stats.items()
                 for caller, (nc, _cc, _tt, ct) in callers.items() if nc or ct}
    assert got_edges == want_edges


def ev(t: int, fid: int, kind: int) -> Event:
    return Event(t, fid, kind, 0, 0)


def test_primitive_calls_leave_out_recursive_entries_as_cprofile_does() -> None:
    # f(1) -> f -> f, then g(2) twice from the outer f: f has 3 calls, 1 primitive
    events = [ev(0, 1, CALL), ev(1, 1, CALL), ev(2, 1, CALL), ev(3, 1, RETURN), ev(4, 1, RETURN),
              ev(5, 2, CALL), ev(6, 2, RETURN), ev(7, 2, CALL), ev(8, 2, RETURN), ev(10, 1, RETURN)]
    run = make_run()
    out = io.BytesIO()
    exporter = PstatsExporter(run, out)
    exporter.replayed(walk(events, None, run, stacks.PSTATS))
    exporter.finish()
    stats = marshal.loads(out.getvalue())
    f, g = ("prog.py", 1, "f1"), ("prog.py", 2, "f2")
    assert stats[f][:2] == (1, 3) and stats[g][:2] == (2, 2)
    assert stats[f][3] == 10 / 1e9  # cumulative: the outermost activation only
    assert stats[f][4] == {f: (2, 1, 3 / 1e9, 3 / 1e9)}  # f->f: 2 calls, 1 primitive; spans 1..4
    assert stats[g][4] == {f: (2, 2, 2 / 1e9, 2 / 1e9)}


def test_hidden_frames_are_never_entered_and_their_callees_hang_below_the_visible_caller() -> None:
    # 5 is hidden (ulma's bootstrap): main(1) -> hidden(5) -> work(2)
    events = [ev(0, 1, CALL), ev(10, 5, CALL), ev(20, 2, CALL), ev(30, 2, RETURN), ev(40, 5, RETURN),
              ev(50, 1, RETURN)]
    seen: list[tuple[str, int, int]] = []

    class Record(Rebuild):
        def enter(self, thread: int, t: int, fid: int, parent: int, kind: int) -> None:
            seen.append(("enter", fid, parent))

        def leave(self, thread: int, t: int, fid: int, parent: int, start: int, self_ns: int) -> None:
            seen.append(("leave", fid, self_ns))

    walk(events, Record(), make_run(hidden=frozenset({5})))
    # main's self excludes the hidden frame's span, as the aggregator counts it
    assert seen == [("enter", 1, -1), ("enter", 2, 5), ("leave", 2, 10), ("leave", 1, 20)]


def test_ticks_become_ns_from_the_session_start() -> None:
    run = make_run()
    run.start_ticks, run.ns_per_tick = 1000, 0.5
    seen: list[tuple[int, int]] = []

    class Record(Rebuild):
        def leave(self, thread: int, t: int, fid: int, parent: int, start: int, self_ns: int) -> None:
            seen.append((start, t))

    walk([ev(1000, 1, CALL), ev(1400, 1, RETURN)], Record(), run)
    assert seen == [(0, 200)]


@settings(max_examples=200, deadline=None)
@given(frame_event_lists, st.integers(0, 1000),
       st.sampled_from([frozenset(), frozenset({2}), frozenset({1, 3})]))
def test_frames_ends_only_are_the_frames_without_their_starts(raw: list[tuple[int, int, int, int, int]],
                                                              start: int, hidden: frozenset[int]) -> None:
    events = to_events(raw, start)
    run = make_run(hidden)
    every, ends = Transitions(), Transitions()
    walk(events, every, run)
    walk(events, ends, run, stacks.FRAMES | stacks.ENDS_ONLY)
    assert ends.seen == [seen for seen in every.seen if seen[0] != 1]


def deep_walk(seed: int, functions: int, depth: int, length: int) -> list[Event]:
    """A random walk over many functions with deep stacks, recursion, and now and then an exit of a
    frame far down the stack (the frames above it end with it): a replay's maps of open frames grow
    while frames are open."""
    rng = random.Random(seed)
    events: list[Event] = []
    stack: list[int] = []
    for t in range(length):
        if not stack or (len(stack) < depth and rng.random() < 0.55):
            fid = rng.randrange(1, functions + 1) if rng.random() < 0.9 else stack[-1] if stack else 1
            stack.append(fid)
            events.append(Event(t * 3, fid, rng.choice((CALL, CALL, RESUME)), 0, 0))
        else:
            at = len(stack) - 1 if rng.random() < 0.97 else rng.randrange(len(stack))
            events.append(Event(t * 3, stack[at], rng.choice((RETURN, RETURN, YIELD)), 0, 0))
            del stack[at:]
    return events


def test_a_deep_stack_of_many_functions_replays_as_the_models() -> None:
    for seed in range(4):
        events = deep_walk(seed, functions=500, depth=300, length=20_000)
        run = make_run()
        # frames: the reference walker's
        want = Transitions()
        model = FrameWalk(0, run, run.hidden)
        model.feed(memoryview(records.encode(events)), want)
        model.close(want)
        got = Transitions()
        walk(events, got, run)
        assert got.seen == want.seen
        # cProfile's figures: the totals model's
        totals = ThreadModel()
        totals.feed(events)
        totals.close()
        funcs, edges = snapshot([totals])
        c_funcs, c_edges = walk(events, None, run, stacks.PSTATS).pstats()
        assert sorted((fid, n, ns, cum) for fid, n, _rec, ns, cum in c_funcs if n or ns or cum) == sorted(
            (fid, calls + resumes, self_t, total) for fid, calls, resumes, self_t, total in funcs)
        assert sorted((c, d, n, cum) for c, d, n, _rec, _ns, cum in c_edges if n or cum) == sorted(
            (c, d, calls + resumes, total) for c, d, calls, resumes, total in edges)


def test_records_at_any_alignment_replay_alike() -> None:
    data = records.encode(deep_walk(7, functions=40, depth=12, length=5000))
    shifted = memoryview(bytearray(3) + data)[3:]  # records off their 8-byte alignment
    run = make_run()
    transitions = []
    for buf in (data, shifted):
        replay = _core.Replay(run.start_ticks, run.scale, stacks.FRAMES | stacks.PSTATS, run.hidden)
        replay.feed(0, buf)
        replay.close()
        transitions.append((replay.take(), replay.pstats()))
    assert transitions[0] == transitions[1] and transitions[0][0]
    totals = []
    for buf in (data, shifted):
        agg = _core.Aggregator()
        agg.feed(0, buf)
        agg.close()
        totals.append(agg.snapshot())
    assert totals[0] == totals[1] and totals[0][0]


def test_c_formatted_times_are_pythons_at_every_digit_boundary() -> None:
    # frames from one boundary to the next: around each power of ten and of two, up to 2^62 ns
    ticks = sorted({n + d for k in range(19) for n in (10**k, 1 << (3 * k + 6)) for d in (-1, 0, 1)}
                   | {(1 << 62) - 1})
    pairs = list(itertools.pairwise(ticks))
    events = [e for a, b in pairs for e in (ev(a, 1, CALL), ev(b, 1, RETURN))]
    run = make_run()
    chrome: list[bytes] = []
    replay = _core.Replay(0, run.scale, stacks.FRAMES | stacks.ENDS_ONLY)
    replay.feed(0, records.encode(events))
    replay.take_chrome({}, lambda thread, fid, counter: b"P", lambda thread, start, end: "",
                       lambda text: chrome.append(bytes(text)))
    assert b"".join(chrome) == b"".join(f"P{us(a)},\"dur\":{us(b - a)}}}".encode()
                                        for a, b in pairs)
    speedscope: list[bytes] = []
    replay = _core.Replay(0, run.scale, stacks.FRAMES)
    replay.feed(0, records.encode(events))
    replay.take_speedscope({}, 0, lambda thread, text, first, last: speedscope.append(bytes(text)))
    assert b"".join(speedscope) == b"".join(
        f',\n{{"type":"O","frame":0,"at":{a}}},\n{{"type":"C","frame":0,"at":{b}}}'.encode()
        for a, b in pairs)


def test_speedscope_events_packed_aside_format_to_the_text_written_directly() -> None:
    # two threads, frames with indexes past a byte and times at every digit boundary: the
    # thread not written directly is packed, and formats later to what the direct one gets
    ticks = sorted({n + d for k in range(19) for n in (10**k, 1 << (3 * k + 6)) for d in (-1, 0, 1)})
    events = [e for i, (a, b) in enumerate(itertools.pairwise(ticks))
              for e in (ev(a, 1 + i % 300, CALL), ev(b, 1 + i % 300, RETURN))]
    data = records.encode(events)
    run = make_run()
    got: dict[bool, dict[int, bytes]] = {}
    for direct in (None, 5):
        out: dict[int, bytes] = {}

        def write(thread: int, data: memoryview, first: int, last: int, out: dict[int, bytes] = out) -> None:
            out[thread] = out.get(thread, b"") + bytes(data)

        replay = _core.Replay(0, run.scale, stacks.FRAMES)
        for thread in (5, 6):
            replay.feed(thread, data)
        replay.close()
        replay.take_speedscope({}, 0, write, direct)
        got[direct is None] = out
    assert len(got[False][6]) == _core.SPEEDSCOPE_PACKED_BYTES * 2 * (len(ticks) - 1)
    assert got[False][5] == got[True][5] == got[True][6]
    text = bytearray(1)  # grown as needed
    assert bytes(text[:_core.speedscope_text(got[False][6], text)]) == got[True][6]
    with pytest.raises(ValueError, match="packed events are"):
        _core.speedscope_text(b"x" * (_core.SPEEDSCOPE_PACKED_BYTES + 1), text)
