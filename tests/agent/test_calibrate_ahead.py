"""A prestarted interpreter calibrates the probe while it waits for its
options (ulma.agent.bootstrap.calibrate_ahead); start_agent takes those
figures only for the very options they were measured with.  Each check runs
in an interpreter of its own, as the agent is one per process."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import subprocess_env

# start_agent on a real session after a calibration ahead whose figures are
# replaced by known ones: the probe cost published tells which were used
USES = """
import json, os, sys
from ulma import _core
from ulma.agent import AgentOptions, bootstrap, calibrate, default_engine
bootstrap.calibrate_ahead()
token, off, on = bootstrap._ahead
sentinel = (1_000_000, 1_000_000 + 2 * calibrate.CALLS * 7)  # a probe of 7.0 ns, at 2 callbacks a call
bootstrap._ahead = (token, *sentinel)
options = AgentOptions(default_engine(), native_calls=sys.argv[1] == "native")
fd = os.memfd_create("ulma-test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
session = _core.Session(fd, 1 << 20, 1, 1 << 16)
bootstrap.start_agent(os.dup(fd), options, alone=True)
probe = session.agent_info()["probe_ns"]
_core.agent_stop()
print(json.dumps({"token": token, "default": AgentOptions(default_engine()).encode(), "measured": [off, on],
                  "probe_ns": probe, "from_sentinel": [calibrate.probe_ns(*sentinel, n) for n in (2, 3)]}))
"""

# after it the agent is off: no sys.monitoring tool is left registered
LEAVES = """
import json, sys
from ulma.agent import bootstrap
bootstrap.calibrate_ahead()
tools = [sys.monitoring.get_tool(i) for i in range(6)] if hasattr(sys, "monitoring") else []
print(json.dumps({"ahead": bootstrap._ahead is not None, "tools": tools}))
"""


def _run(code: str, *args: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_the_calibration_made_ahead_is_used_for_the_default_options_it_was_made_with() -> None:
    got = _run(USES, "default")
    assert got["token"] == got["default"]
    measured = got["measured"]
    assert isinstance(measured, list)
    off, on = measured
    assert 0 < off < on, got
    assert got["probe_ns"] == 7.0, got


def test_a_run_with_other_options_calibrates_again_rather_than_take_the_figure_made_ahead() -> None:
    got = _run(USES, "native")
    probe, sentinel = got["probe_ns"], got["from_sentinel"]
    # measured again (under load it may even come out 0.0, clamped), never the planted figure
    assert isinstance(probe, float) and isinstance(sentinel, list), got
    assert all(abs(probe - ns) > 0.002 for ns in sentinel), got


def test_the_calibration_made_ahead_leaves_no_hooks_behind() -> None:
    got = _run(LEAVES)
    assert got["ahead"] is True
    assert got["tools"] == [None] * len(got["tools"]), got  # type: ignore[arg-type]
