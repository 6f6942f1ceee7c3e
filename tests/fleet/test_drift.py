"""Clock drift, applied: a host whose clock runs 200 ppm fast (ULMA_FLEET_TEST_CLOCK_DRIFT_PPM, and an
offset, injected on the streaming side: every time and every ns per tick it sends) streams ~9 s of
events; the merged trace's Chrome export places its calls where the run's own trace has them,
within the bound the collector reports -- and, the drift left out, 1.8 ms away, outside it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import ulma_command
from tests.fleet.helpers import Collector, env, processes, run

DRIFT_PPM = 200.0
SECONDS = 9.0
PROGRAM = """\
import sys, time

def mark(i):
    return sum(range(100))

end = time.monotonic() + float(sys.argv[1])
i = 0
while time.monotonic() < end:
    mark(i)
    i += 1
    time.sleep(0.05)
"""


def marks(chrome_file: Path) -> list[float]:
    """The start of each call of mark, in ns since the time line's 0."""
    events = json.loads(chrome_file.read_text())
    return sorted(e["ts"] * 1000 for e in events if e.get("ph") == "X" and e.get("name") == "mark")


def export(trace: Path, out: Path) -> list[float]:
    subprocess.run(ulma_command(["export", "--format", "chrome", str(trace), "-o", str(out)]), env=env(),
                   check=True, capture_output=True, timeout=120)
    return marks(out)


def test_drift_is_estimated_and_applied_within_the_reported_bound(tmp_path: Path) -> None:
    program = tmp_path / "marks.py"
    program.write_text(PROGRAM)
    collector = Collector(tmp_path)
    try:
        result = run(["--to", collector.address, "--to-send", "events", "-o", str(tmp_path / "local.ulma"),
                      str(program), str(SECONDS)], cwd=tmp_path,
                     ULMA_FLEET_TEST_CLOCK_OFFSET_NS="-1500000000",
                     ULMA_FLEET_TEST_CLOCK_DRIFT_PPM=str(DRIFT_PPM))
        _, _, doc = collector.stop()
    finally:
        collector.kill()
    assert result.returncode == 0, result.stderr
    (row,) = processes(doc)
    clock = row["clock"]
    bound = clock["error_ns"]
    assert clock["drift_ppm"] is not None and abs(clock["drift_ppm"] - DRIFT_PPM) < 50, clock
    assert bound is not None and bound < 800_000, clock  # under half the 1.8 ms the drift makes
    # the truth: the run's own trace, on this machine's clock (the collector's too)
    local = export(tmp_path / "local.ulma", tmp_path / "local.json")
    merged = export(collector.trace, tmp_path / "merged.json")
    assert len(local) == len(merged) > 100
    assert local[-1] > (SECONDS - 1) * 1e9
    # both time lines start at the session's start: a time's error and the start's, each within bound
    errors = [abs(m - t) for m, t in zip(merged, local, strict=True)]
    assert max(errors) <= 2 * bound, (max(errors), clock)
    # without the drift: the calls near the end are placed 200 ppm of ~9 s (1.8 ms) late
    index = json.loads((collector.trace / "fleet.json").read_text())
    for m in index["members"]:
        m["drift_ppm"] = None
    (collector.trace / "fleet.json").write_text(json.dumps(index))
    undrifted = export(collector.trace, tmp_path / "undrifted.json")
    late = undrifted[-1] - local[-1]
    assert late > 2 * bound and abs(late - DRIFT_PPM * 1e-6 * local[-1]) < 2 * bound, (late, clock)
