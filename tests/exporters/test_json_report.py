"""The JSON report is written item by item: a profile with many functions (a program that makes
code) is not copied into one document in memory, and the text is still the indented document a
JSON parser reads, field for field."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

from ulma.exporters import json_report
from ulma.monitor.profile import EdgeStats, FunctionStats, Profile, ThreadInfo

MANY = 20_000
PEAK_LIMIT = 2 << 20  # a copy of MANY rows as dicts is ~10 MiB; one row at a time is kilobytes


def profile_of(n: int, split_known: bool = True) -> Profile:
    functions = [FunctionStats(f'f{i} "q" \\ \n\u00e9\u2028', f"<made {i}>", i, i + 1, i % 2, 5 * i, 7 * i,
                               cpu_ns=3 * i, wait_ns=i, wait_blocked_ns=None if i % 2 else i,
                               wait_runnable_ns=None if i % 2 else 0, native=i % 3 == 0)
                 for i in range(n)]
    edges = [EdgeStats(i, i + 1, 2, 1, 9 * i) for i in range(max(n - 1, 0))]
    return Profile("3.12.1", 123_456, "monitoring", "tsc", functions, edges,
                   [ThreadInfo(0, 4242, 99, 1, 5, 0)], split_known=split_known, probe_ns=12.3456)


def test_json_report_is_the_indented_document_with_every_row(tmp_path: Path) -> None:
    for n, known in ((0, True), (1, False), (50, True)):
        path = tmp_path / f"report{n}.json"
        json_report.write(profile_of(n, known), str(path))
        text = path.read_text(encoding="utf-8")
        doc = json.loads(text)
        assert text == json.dumps(doc, indent=1) + "\n"  # the layout json.dump(indent=1) writes
        assert list(doc)[:3] == ["version", "python", "wall_ns"] and list(doc)[-2:] == ["functions", "edges"]
        assert (doc["events"], doc["dropped"], doc["threads"], doc["probe_ns"]) == (99, 1, 1, 12.35)
        assert len(doc["functions"]) == n and len(doc["edges"]) == max(n - 1, 0)
        for i, f in enumerate(doc["functions"]):
            assert list(f) == ["name", "file", "line", "calls", "resumes", "self_ns", "total_ns", "cpu_ns",
                               "wait_ns", "wait_blocked_ns", "wait_runnable_ns", "overhead_ns",
                               "unmeasured_ns", "self_cpu_ns", "self_wait_ns", "self_overhead_ns",
                               "call_overhead_ns", "calls_scaled", "native", "off", "off_ns",
                               "untraced_callees", "await_ns", "self_await_ns", "idle", "kind"]
            assert (f["name"], f["file"], f["line"], f["calls"], f["self_ns"]) == (
                f'f{i} "q" \\ \n\u00e9\u2028', f"<made {i}>", i, i + 1, 5 * i)
            assert f["cpu_ns"] == (3 * i if known else None)
            assert f["wait_blocked_ns"] == (None if i % 2 else i) and f["native"] == (i % 3 == 0)
        for i, e in enumerate(doc["edges"]):
            assert e == {"caller": i, "callee": i + 1, "calls": 2, "resumes": 1, "total_ns": 9 * i}


def test_json_report_of_many_functions_holds_one_row_at_a_time(tmp_path: Path) -> None:
    profile = profile_of(MANY)
    path = tmp_path / "report.json"
    tracemalloc.start()
    try:
        json_report.write(profile, str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_LIMIT, f"writing {MANY} functions peaked at {peak / 2**20:.1f} MiB"
    assert len(json.loads(path.read_text(encoding="utf-8"))["functions"]) == MANY
