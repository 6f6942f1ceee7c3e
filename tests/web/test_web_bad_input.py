"""--web given what it cannot do: one clear line, a non-zero exit, nothing started."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import run_process, ulma_command
from tests.integration.test_bad_input import assert_one_error_line

PROGRAM = Path(__file__).resolve().parent / "programs" / "counted.py"
NO_SUCH_PID = str(2**22 + 1)  # above Linux's largest pid_max


@pytest.mark.parametrize("args", [
    ["attach", NO_SUCH_PID, "--web"],
    ["attach", "0", "--web"],
    ["attach", NO_SUCH_PID, "--web", "--live"],
    ["run", "--web", "--live", str(PROGRAM)],
    ["run", "--web", "--step", str(PROGRAM)],
    ["run", "--web", "no_such_script_xyz.py"],
    ["run", "--web", "--refresh", "0", str(PROGRAM)],
])
def test_web_with_bad_input_says_one_line(args: list[str], describe: Callable[..., str]) -> None:
    result = run_process(ulma_command(args), env={"ULMA_NO_BROWSER": "1"}, timeout=60)
    assert_one_error_line(result, describe)
    assert "web view at" not in result.stderr
