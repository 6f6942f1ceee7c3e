"""META, CALIB and END records: every number the reader passes on is finite, in range and of its
type, strings are bounded, nesting is limited -- anything else is dropped with one warning line
naming it, or (META unreadable) one error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.hostile_traces import WORK, bounded, raw_chunk, raw_trace, symbols_chunk
from tests.hostile_traces import events as encoded
from ulma.format import records, trace
from ulma.monitor.offline import load_profile

CALL, RETURN = records.CALL, records.RETURN


def read(tmp_path: Path, *, end: bytes | None = None, meta: bytes | None = None,
         calib: bytes | None = None) -> trace.TraceReader:
    path = tmp_path / "t.ulma"
    chunks = [symbols_chunk(WORK), raw_chunk(trace.EVENTS, encoded((10, 1, CALL), (30, 1, RETURN)))]
    if calib is not None:
        chunks.append(raw_chunk(trace.CALIB, calib))
    if end is None:
        raw_trace(path, chunks, meta=meta)
    else:
        raw_trace(path, chunks, meta=meta, end=end)
    with bounded(30, memory_bytes=256 << 20):
        reader = trace.TraceReader(str(path))
        list(reader.chunks())
    return reader


def warned(reader: trace.TraceReader, *words: str) -> bool:
    return any(all(w in line for w in words) for line in reader.warnings)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_a_number_that_is_not_finite_is_dropped_and_named(tmp_path: Path, bad: str) -> None:
    """Python's json reads NaN and Infinity (and 1e400 as inf): they would reach the report."""
    end = f'{{"wall_ns": {bad}, "ns_per_tick": {bad}, "probe_ns": {bad}, "dropped": {{"0": {bad}, "1": 4}},'
    reader = read(tmp_path, end=(end + ' "program_pid": 42}').encode())
    assert reader.end == {"program_pid": 42, "dropped": {"1": 4}}, reader.end
    assert warned(reader, "the end record has", "ns_per_tick", "probe_ns", "wall_ns", "dropped")


def test_a_report_from_an_end_record_full_of_nan_uses_the_other_records(tmp_path: Path) -> None:
    path = tmp_path / "t.ulma"
    raw_trace(path, [symbols_chunk(WORK), raw_chunk(trace.EVENTS, encoded((10, 1, CALL), (30, 1, RETURN)))],
              meta=b'{"ns_per_tick": 0.5}', end=b'{"ns_per_tick": NaN, "wall_ns": Infinity}')
    reader = trace.TraceReader(str(path))
    profile = load_profile(reader)
    assert [(f.calls, f.total_ns) for f in profile.functions] == [(1, 10)]  # META's 0.5 ns a tick
    assert warned(reader, "ns_per_tick", "wall_ns")


@pytest.mark.parametrize(("key", "value"), [
    ("wall_ns", 1.5), ("wall_ns", True), ("wall_ns", -1), ("wall_ns", 1 << 63), ("wall_ns", "100"),
    ("program_pid", 1 << 40), ("program_pid", None), ("tool_id", 99), ("tool_id", 2.0),
    ("ns_per_tick", 0), ("ns_per_tick", 1e7), ("ns_per_tick", "1"), ("probe_ns", 5e6),
    ("schedstat", 1), ("returncode", 1 << 40), ("dropped", [1, 2]), ("os_tid", 7),
])
def test_a_value_of_the_wrong_type_or_out_of_range_is_dropped_and_named(
        tmp_path: Path, key: str, value: Any) -> None:
    reader = read(tmp_path, end=json.dumps({key: value, "untraced_events": 3}).encode())
    assert reader.end == {"untraced_events": 3} and warned(reader, "the end record has", key), reader


@pytest.mark.parametrize(("key", "value"), [
    ("wall_ns", 0), ("wall_ns", (1 << 63) - 1), ("tool_id", None), ("tool_id", 4), ("ns_per_tick", 1),
    ("ns_per_tick", 0.37), ("probe_ns", 0), ("schedstat", False), ("returncode", -9),
    ("dropped", {"0": 3, "4294967295": 0}), ("os_tid", {})])
def test_a_value_in_range_is_kept(tmp_path: Path, key: str, value: Any) -> None:
    reader = read(tmp_path, end=json.dumps({key: value}).encode())
    assert reader.end == {key: value} and reader.warnings == []


def test_a_per_thread_map_keeps_its_good_entries(tmp_path: Path) -> None:
    end = {"dropped": {"0": 3, "x": 1, "1": -1, "2": 2.5, "٣": 1, " 4": 1, "5": 7}}
    reader = read(tmp_path, end=json.dumps(end).encode())
    assert reader.end == {"dropped": {"0": 3, "5": 7}} and warned(reader, "dropped")


def test_a_list_of_texts_keeps_its_good_entries_and_at_most_256(tmp_path: Path) -> None:
    meta = {"scope": ["--only a", 7, None, "x" * 10_000, "\ud800", "--exclude b"], "engine": "pep523"}
    reader = read(tmp_path, meta=json.dumps(meta).encode())
    assert reader.meta == {"scope": ["--only a", "--exclude b"], "engine": "pep523"}
    assert warned(reader, "metadata has scope")
    reader = read(tmp_path, meta=json.dumps({"scope": ["--only a"] * 10_000}).encode())
    assert reader.meta == {"scope": ["--only a"] * 256} and warned(reader, "scope")
    reader = read(tmp_path, meta=json.dumps({"scope": "--only a"}).encode())
    assert reader.meta == {} and warned(reader, "scope")


def test_the_switched_off_functions_of_the_end_record_reach_the_profile_only_when_they_fit(
        tmp_path: Path) -> None:
    path = tmp_path / "t.ulma"
    raw_trace(path, [symbols_chunk(WORK), raw_chunk(trace.EVENTS, encoded((10, 1, CALL), (30, 1, RETURN)))],
              meta=b'{"ns_per_tick": 1.0}',
              end=b'{"off_ns": {"1": 500, "x": 3, "2": -1}, "off_now": {"1": 1, "1e9": 1}}')
    reader = trace.TraceReader(str(path))
    profile = load_profile(reader)
    assert [(f.name, f.off, f.off_ns) for f in profile.functions] == [("work", True, 500)]
    assert warned(reader, "off_ns", "off_now")


def test_a_string_longer_than_the_schema_allows_is_dropped(tmp_path: Path) -> None:
    reader = read(tmp_path, meta=json.dumps({"python": "3" * 10_000, "engine": "pep523"}).encode())
    assert reader.meta == {"engine": "pep523"} and warned(reader, "metadata has python")


@pytest.mark.parametrize("text", [b'"\\ud800"', b'"\xed\xa0\x80"'])
def test_a_string_with_a_lone_surrogate_is_dropped(tmp_path: Path, text: bytes) -> None:
    """json reads both (the second: UTF-8-encoded surrogates); pprof's writer then failed on it
    (found by the fuzzer)."""
    reader = read(tmp_path, meta=b'{"python": ' + text + b', "engine": "pep523"}')
    assert reader.meta == {"engine": "pep523"} and warned(reader, "metadata has python")


def test_unknown_keys_are_ignored_without_a_warning(tmp_path: Path) -> None:
    reader = read(tmp_path, end=b'{"from_a_newer_ulma": NaN, "wall_ns": 5}')
    assert reader.end == {"wall_ns": 5} and reader.warnings == []


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def test_json_nested_200000_levels_deep_in_end_or_calib_is_a_warning(tmp_path: Path) -> None:
    """It was a RecursionError traceback."""
    reader = read(tmp_path, end=deep(200_000), calib=b'{"x": ' + deep(200_000) + b"}")
    assert reader.end is None and reader.calib is None
    assert warned(reader, "the end record at byte", "nested deeper than 8 levels")
    assert warned(reader, "the calib record at byte", "nested deeper than 8 levels")


def test_json_nested_200000_levels_deep_in_meta_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(trace.TraceError, match=r"damaged metadata \(nested deeper than 8 levels\)"):
        read(tmp_path, meta=deep(200_000))


@pytest.mark.parametrize(("levels", "refused"), [(8, False), (9, True)])
def test_nesting_is_limited_to_eight_levels_and_brackets_in_strings_do_not_count(
        tmp_path: Path, levels: int, refused: bool) -> None:
    text = b'{"k": "[[[[[[[[[[{{{{", "x": ' + deep(levels - 1) + b'}'
    reader = read(tmp_path, end=text)
    assert warned(reader, "nested deeper") == refused and (reader.end is None) == refused


@pytest.mark.parametrize(("payload", "why"), [
    (b'{"wall_ns": 1' + b"0" * 5000 + b"}", "not JSON"),  # past Python's 4300 digits for an int
    (b'{"wall_ns": 1, "host": "\xff\xfe"}', "not JSON"),
    (b"[1, 2]", "not a JSON object"),
])
def test_an_unreadable_end_record_is_a_warning_and_ignored(tmp_path: Path, payload: bytes, why: str) -> None:
    reader = read(tmp_path, end=payload)
    assert reader.end is None and warned(reader, "the end record at byte", why), reader.warnings


def test_a_record_larger_than_1_mib_is_refused(tmp_path: Path) -> None:
    reader = read(tmp_path, end=b'{"pad": "' + b"x" * (1 << 20) + b'"}')
    assert reader.end is None and warned(reader, "impossible chunk length", "at most 1048576")


def test_a_calibration_problem_repeated_in_every_calib_record_is_one_warning(tmp_path: Path) -> None:
    path = tmp_path / "t.ulma"
    raw_trace(path, [raw_chunk(trace.CALIB, b'{"ns_per_tick": -1}')] * 50)
    reader = trace.TraceReader(str(path))
    list(reader.chunks())
    assert reader.warnings == ["the calib record has ns_per_tick not finite, out of range or of the wrong "
                               "type: ignored"]


def test_every_key_the_monitor_writes_is_in_the_schema(tmp_path: Path) -> None:
    """A real run's META, CALIB and END pass whole: the schema drops nothing the monitor writes."""
    from tests.conftest import run_process, subprocess_env, ulma_command

    path = tmp_path / "run.ulma"
    program = tmp_path / "p.py"
    program.write_text("def f():\n    return 1\n\nfor _ in range(1000):\n    f()\n")
    result = run_process(ulma_command(["record", "-o", str(path), str(program)]), env=subprocess_env())
    assert result.returncode == 0, result.stderr
    reader = trace.TraceReader(str(path))
    raw = {c.kind: json.loads(c.payload) for c in reader.chunks() if c.kind in (trace.META, trace.END)}
    assert reader.warnings == []
    assert reader.meta == raw[trace.META] and reader.end == raw[trace.END]
