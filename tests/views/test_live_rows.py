"""The live table's model without a screen: bar cells, calls/s, sorting, filtering, callers/callees."""

from __future__ import annotations

import pytest

from ulma.monitor.profile import EdgeStats, FunctionStats, Profile
from ulma.views import bar
from ulma.views.live_rows import (
    COLUMN_INDEX,
    COLUMNS,
    Baseline,
    Row,
    baseline,
    key_of,
    label,
    make_rows,
    mostly_waiting,
    neighbours,
    texts,
    time_bar,
    visible,
)
from ulma.views.units import fmt_ns


def fn(name: str, calls: int, self_ns: int, total_ns: int, file: str = "/src/app.py", line: int = 1,
       resumes: int = 0) -> FunctionStats:
    return FunctionStats(name, file, line, calls, resumes, self_ns, total_ns)


def sample() -> Profile:
    """main -> work -> leaf (x100), main -> work (x10), leaf -> leaf (recursion, x5)."""
    p = Profile(python="3.12", wall_ns=1_000_000, engine="monitoring", clock="tsc")
    p.functions = [fn("main", 1, 10, 1_000_000, line=1), fn("work", 10, 600_000, 990_000, line=10),
                   fn("leaf", 105, 390_000, 390_000, file="/lib/leaf.py", line=3)]
    p.edges = [EdgeStats(0, 1, 10, 0, 990_000), EdgeStats(1, 2, 100, 0, 390_000),
               EdgeStats(2, 2, 5, 0, 20_000)]
    return p


def test_bar_cells_add_up_to_the_bar_length_and_scale_with_the_whole() -> None:
    assert bar.cells([1, 1, 1, 1], 4, 20) == [5, 5, 5, 5]
    assert sum(bar.cells([1, 1, 1], 3, 20)) == 20  # largest remainder keeps the length
    assert bar.cells([30, 20], 100, 10) == [3, 2]  # half the whole: half the width
    assert bar.cells([300, 0], 100, 10) == [10, 0]  # more than the whole is capped
    assert bar.cells([0, 0], 100, 10) == [0, 0]
    assert bar.cells([5, 5], 0, 10) == [0, 0]


def test_a_bar_takes_four_parts_and_is_always_its_width() -> None:
    pieces = bar.render([40, 30, 20, 10], bar.FOUR_WAY, 100, 10)
    assert [style for _, style in pieces] == ["red", "yellow", "blue", "white", ""]
    assert sum(len(text) for text, _ in pieces) == 10
    assert "".join(text for text, _ in bar.render([1, 0, 0], bar.UNSPLIT, 100, 10)) == " " * 10
    with pytest.raises(ValueError):
        bar.render([1, 2], bar.FOUR_WAY, 10, 10)


def test_calls_per_second_come_from_the_previous_snapshot() -> None:
    p = sample()
    before = Baseline(0, {key_of(p.functions[2]): 5})
    rows = {r.stats.name: r for r in make_rows(p, before, 2_000_000_000)}  # 2 s later
    assert rows["leaf"].rate == 50.0  # (105 - 5) / 2 s
    assert rows["work"].rate == 5.0  # absent from the baseline: counted from zero (after a clear)
    assert all(r.rate is None for r in make_rows(p, None, 1))
    assert rows["work"].share == pytest.approx(60.0)  # self over the covered wall time
    assert baseline(p, 7).calls[key_of(p.functions[2])] == 105


def test_sorting_by_each_column_and_reversing() -> None:
    rows = make_rows(sample(), None, 0)
    by = {c.key: [r.stats.name for r in visible(rows, "", c, c.descending)] for c in COLUMNS}
    assert by["self"] == ["work", "leaf", "main"]
    assert by["calls"] == ["leaf", "work", "main"]
    assert by["total"] == ["main", "work", "leaf"]
    assert by["function"] == ["leaf", "main", "work"]
    calls = COLUMNS[COLUMN_INDEX["calls"]]
    assert [r.stats.name for r in visible(rows, "", calls, False)] == ["main", "work", "leaf"]


def test_the_filter_matches_name_or_file_and_line_ignoring_case() -> None:
    rows = make_rows(sample(), None, 0)
    self_col = COLUMNS[COLUMN_INDEX["self"]]
    assert [r.stats.name for r in visible(rows, "WOR", self_col, True)] == ["work"]
    assert [r.stats.name for r in visible(rows, "leaf.py:3", self_col, True)] == ["leaf"]
    assert [r.stats.name for r in visible(rows, "/src/", self_col, True)] == ["work", "main"]
    assert visible(rows, "nothing", self_col, True) == []


def test_callers_and_callees_with_counts_time_and_share() -> None:
    p = sample()
    callers, callees = neighbours(p, key_of(p.functions[1]))
    assert [(c.key[0], c.calls, c.total_ns) for c in callers] == [("main", 10, 990_000)]
    assert [(c.key[0], c.calls, c.total_ns) for c in callees] == [("leaf", 100, 390_000)]
    assert callees[0].share == pytest.approx(100 * 390_000 / 990_000)
    leaf_callers, leaf_callees = neighbours(p, key_of(p.functions[2]))
    assert [c.key[0] for c in leaf_callers] == ["work", "leaf"]  # recursion shows on both sides
    assert [c.key[0] for c in leaf_callees] == ["leaf"]
    assert neighbours(p, ("gone", "x", 1)) == ([], [])


def test_i_hides_the_functions_that_waited_95_percent_of_their_total_time_or_more() -> None:
    sleeper = FunctionStats("sleeper", "/src/app.py", 1, 1, 0, 1000, 1000, cpu_ns=40, wait_ns=960)
    almost = FunctionStats("almost", "/src/app.py", 2, 1, 0, 1000, 1000, cpu_ns=60, wait_ns=940)
    worker = FunctionStats("worker", "/src/app.py", 3, 1, 0, 1000, 1000, cpu_ns=1000)
    p = Profile(python="3.12", wall_ns=10_000, engine="monitoring", clock="tsc", split_known=True,
                functions=[sleeper, almost, worker])
    rows = make_rows(p, None, 0)
    by_self = COLUMNS[COLUMN_INDEX["function"]]
    assert [r.key[0] for r in visible(rows, "", by_self, False)] == ["almost", "sleeper", "worker"]
    assert [r.key[0] for r in visible(rows, "", by_self, False, hide_waiting=True)] == ["almost", "worker"]
    # without CPU readings waiting is not told apart: nothing is idle
    assert not mostly_waiting(sleeper, split_known=False)
    assert [r.key[0] for r in visible(rows, "", by_self, False, True, split_known=False)] == [
        "almost", "sleeper", "worker"]


MS = 1_000_000


def clocks_sample(split_known: bool = True) -> Profile:
    """A 10 s run: naps() slept 5.9 s in 59 calls using 2 ms of CPU (1 ms of it its own);
    burns() computed 3 s of CPU in 3 s, in 30 calls; main() called both."""
    p = Profile(python="3.12", wall_ns=10_000 * MS, engine="monitoring", clock="tsc",
                split_known=split_known)
    main = FunctionStats("main", "/src/app.py", 1, 1, 0, 1 * MS, 8_902 * MS, cpu_ns=3_003 * MS,
                         wait_ns=5_899 * MS, self_cpu_ns=1 * MS)
    naps = FunctionStats("naps", "/src/app.py", 5, 59, 0, 5_900 * MS, 5_900 * MS, cpu_ns=2 * MS,
                         wait_ns=5_898 * MS, self_cpu_ns=1 * MS, self_wait_ns=5_899 * MS)
    burns = FunctionStats("burns", "/src/app.py", 9, 30, 0, 3_000 * MS, 3_000 * MS, cpu_ns=3_000 * MS,
                          self_cpu_ns=3_000 * MS)
    p.functions = [main, naps, burns]
    p.edges = [EdgeStats(0, 1, 59, 0, 5_900 * MS), EdgeStats(0, 2, 30, 0, 3_000 * MS)]
    return p


def drawn(rows: list[Row]) -> dict[str, dict[str, str]]:
    """Each row's numbers as the table draws them, by column."""
    return {r.stats.name: dict(zip([c.key for c in COLUMNS[1:]], texts(r), strict=True)) for r in rows}


def test_on_the_cpu_clock_self_total_per_call_and_share_count_cpu_time_only() -> None:
    p = clocks_sample()
    cpu = drawn(make_rows(p, None, 0, "cpu"))
    # naps() slept 5.9 s: on the CPU clock it shows the 2 ms it computed, never its sleep
    assert cpu["naps"] == {"calls": "59", "rate": "-", "self": "1.0 ms", "total": "2.0 ms",
                           "per_call": fmt_ns(2 * MS / 59), "share": "0.0"}
    assert cpu["burns"] == {"calls": "30", "rate": "-", "self": "3.00 s", "total": "3.00 s",
                            "per_call": "100.0 ms", "share": "30.0"}
    wall = drawn(make_rows(p, None, 0, "wall"))
    assert wall["naps"] == {"calls": "59", "rate": "-", "self": "5.90 s", "total": "5.90 s",
                            "per_call": "100.0 ms", "share": "59.0"}


def test_on_the_cpu_clock_sorting_by_every_time_column_follows_cpu_time() -> None:
    rows = make_rows(clocks_sample(), None, 0, "cpu")
    for key in ("self", "total", "per_call", "share"):
        column = COLUMNS[COLUMN_INDEX[key]]
        order = [r.stats.name for r in visible(rows, "", column, True)]
        assert order.index("burns") < order.index("naps"), (key, order)
    wall_rows = make_rows(clocks_sample(), None, 0, "wall")
    self_col = COLUMNS[COLUMN_INDEX["self"]]
    assert visible(wall_rows, "", self_col, True)[0].stats.name == "naps"


def test_on_the_cpu_clock_the_bar_is_the_cpu_time_alone() -> None:
    p = clocks_sample()
    rows = {r.stats.name: r for r in make_rows(p, None, 0, "cpu")}
    naps = time_bar(rows["naps"], True, p.wall_ns, 20)
    assert "".join(text for text, _ in naps) == " " * 20, naps  # 2 ms of 10 s: no cell
    burns = time_bar(rows["burns"], True, p.wall_ns, 20)
    assert [(len(text), style) for text, style in burns] == [(6, "red"), (14, "")], burns  # 30 % of 20
    wall_rows = {r.stats.name: r for r in make_rows(p, None, 0, "wall")}
    naps_wall = time_bar(wall_rows["naps"], True, p.wall_ns, 20)
    assert [(len(text), style) for text, style in naps_wall] == [(12, "blue"), (8, "")], naps_wall
    assert bar.parts_for(True, "cpu") == bar.CPU_ONLY


def test_on_the_cpu_clock_the_time_columns_say_so() -> None:
    assert [label(c, "cpu") for c in COLUMNS] == [
        "function", "calls", "calls/s", "cpu self", "cpu total", "cpu/call", "cpu%"]
    assert [label(c, "wall") for c in COLUMNS] == [c.label for c in COLUMNS]
    # each label fits its column with the sort key's digit and the arrow
    assert all(len(label(c, "cpu")) + 2 <= c.width for c in COLUMNS if c.width)


def test_without_cpu_readings_the_cpu_clock_shows_wall_time_not_a_cpu_time_it_does_not_have() -> None:
    p = clocks_sample(split_known=False)
    for f in p.functions:  # as build_profile leaves them without readings
        f.cpu_ns, f.self_cpu_ns = f.total_ns, f.self_ns
    rows = make_rows(p, None, 0, "cpu")
    assert {r.clock for r in rows} == {"wall"}
    assert drawn(rows)["naps"]["self"] == "5.90 s"


def test_without_colour_each_part_of_the_bar_has_its_own_letter_and_the_legend_says_which() -> None:
    text = "".join(t for t, _ in bar.render([40, 30, 20, 10], bar.FOUR_WAY, 100, 10, plain=True))
    assert text == "CCCCooowwu"
    assert len({p.glyph for p in bar.FOUR_WAY}) == 4 and len({p.glyph for p in bar.UNSPLIT}) == 3
    legend = bar.legend(bar.FOUR_WAY, plain=True).plain
    assert legend == "bar: C CPU  o overhead  w waiting  u unmeasured"
    assert bar.legend(bar.FOUR_WAY).plain.count(bar.BLOCK) == 4  # in colour: blocks


def test_colour_is_lost_with_no_color_term_dumb_or_no_terminal() -> None:
    assert not bar.colourless({"TERM": "xterm-256color"}, tty=True)
    assert bar.colourless({"TERM": "xterm", "NO_COLOR": "1"}, tty=True)
    assert not bar.colourless({"NO_COLOR": ""}, tty=True)  # no-color.org: set and not empty
    assert bar.colourless({"TERM": "dumb"}, tty=True)
    assert bar.colourless({"TERM": "xterm"}, tty=False)
