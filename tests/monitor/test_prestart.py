"""`ulma run` starts the program's interpreter before it imports its command line (argparse), so
that interpreter's start-up overlaps the monitor's (ulma.monitor.prestart): the program then runs in
that interpreter, one that ulma did not need ends without a word, and one that died waiting is
replaced."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import subprocess_env, ulma_command
from ulma.agent import bootstrap, resolve_engine
from ulma.monitor import prestart
from ulma.monitor.session import Options, Run, Target

Completed = subprocess.CompletedProcess[str]

SHOW = "import sys\nprint(repr(sys.orig_argv[2]))\nprint(sys.argv[1:])\n"


@pytest.fixture
def nothing_prestarted() -> Iterator[None]:
    prestart.discard()
    yield
    prestart.discard()


def test_ulma_run_runs_the_program_in_the_interpreter_started_before_the_options_were_read(
    run_ulma: Callable[..., Completed], tmp_path: Path, describe: Callable[[Completed], str]
) -> None:
    script = tmp_path / "show.py"
    script.write_text(SHOW)
    result = run_ulma(["run", "--no-report", str(script), "a", "--b"])
    assert result.returncode == 0, describe(result)
    assert result.stdout.splitlines() == [repr(prestart.BOOT_EARLY_CODE), "['a', '--b']"], describe(result)


def test_an_option_error_ends_the_prestarted_interpreter_unused_with_one_line_from_ulma(
    run_ulma: Callable[..., Completed], tmp_path: Path, describe: Callable[[Completed], str]
) -> None:
    script = tmp_path / "show.py"
    script.write_text(SHOW)
    result = run_ulma(["run", "--no-such-option", str(script)])
    assert result.returncode == 2 and result.stdout == "", describe(result)
    assert len(result.stderr.splitlines()) == 1 and "--no-such-option" in result.stderr, describe(result)


def test_a_prestarted_interpreter_given_nothing_to_run_exits_zero_and_prints_nothing(
    nothing_prestarted: None, capfd: pytest.CaptureFixture[str]
) -> None:
    prestart.start()
    early = prestart.take()
    assert early is not None
    early.discard()
    assert early.proc.returncode == 0
    assert capfd.readouterr() == ("", "")


def test_a_run_replaces_a_prestarted_interpreter_that_died_waiting(
    nothing_prestarted: None, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "show.py"
    script.write_text(SHOW)
    prestart.start()
    early = prestart._prestarted
    assert early is not None
    early.proc.send_signal(signal.SIGKILL)
    early.proc.wait()
    running = Run(Target("script", str(script), ("x",)), Options(engine=resolve_engine("auto")))
    assert running.proc.pid != early.proc.pid
    running.drain_until_exit()
    result = running.finish()
    assert result.returncode == 0 and result.started
    out = capfd.readouterr().out.splitlines()
    assert out == [repr(bootstrap.BOOT_CODE), "['x']"], out


def test_a_prestarted_interpreter_runs_the_program_with_the_agent_on(
    nothing_prestarted: None, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "work.py"
    script.write_text("def leaf():\n    pass\nfor _ in range(100):\n    leaf()\n")
    prestart.start()
    early = prestart._prestarted
    assert early is not None
    running = Run(Target("script", str(script), ()), Options(engine=resolve_engine("auto")))
    assert running.proc is early.proc
    running.drain_until_exit()
    result = running.finish()
    assert result.returncode == 0 and result.started
    calls = {fn.name: fn.calls for fn in result.profile.functions}
    assert calls.get("leaf") == 100, sorted(calls.items())[:20]
    assert capfd.readouterr() == ("", ""), sys.executable


def test_a_run_whose_interpreter_could_not_be_spawned_early_starts_the_program_as_usual(
    nothing_prestarted: None, tmp_path: Path, capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = tmp_path / "show.py"
    script.write_text(SHOW)

    def no_spawn(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "posix_spawn", no_spawn)
    prestart.start()
    assert prestart._prestarted is None
    monkeypatch.undo()
    running = Run(Target("script", str(script), ("x",)), Options(engine=resolve_engine("auto")))
    running.drain_until_exit()
    result = running.finish()
    assert result.returncode == 0 and result.started
    assert capfd.readouterr().out.splitlines() == [repr(bootstrap.BOOT_CODE), "['x']"]


def test_ulma_run_with_an_interpreter_that_cannot_start_says_so_in_one_line(
    run_python: Callable[..., Completed], tmp_path: Path, describe: Callable[[Completed], str]
) -> None:
    script = tmp_path / "show.py"
    script.write_text(SHOW)
    missing = tmp_path / "no-such-python"
    main = ("import sys\nsys.executable = sys.argv[1]\nsys.argv[1:2] = []\n"
            "from ulma.cli.main import main\nsys.exit(main())\n")
    result = run_python(["-c", main, str(missing), "run", "--no-report", str(script)])
    assert result.returncode == 1 and result.stdout == "", describe(result)
    said = f"ulma: error: cannot start {missing}: No such file or directory"
    assert result.stderr.splitlines() == [said], describe(result)


def test_a_descriptor_given_to_ulma_run_is_the_program_s_as_under_plain_python(
    tmp_path: Path, describe: Callable[[Completed], str]
) -> None:
    script = tmp_path / "write.py"
    script.write_text("import os, sys\nos.write(int(sys.argv[1]), b'reached')\n")
    results = []
    for cmd in (ulma_command(["run", "--no-report"]), [sys.executable]):
        read, write = os.pipe()
        try:
            proc = subprocess.run([*cmd, str(script), str(write)], pass_fds=(write,), capture_output=True,
                                  text=True, env=subprocess_env(), timeout=60, check=False)
            os.close(write)
            write = -1
            results.append((proc.returncode, os.read(read, 100)))
        finally:
            os.close(read)
            if write >= 0:
                os.close(write)
        assert proc.returncode == 0, describe(proc)
    assert results == [(0, b"reached"), (0, b"reached")]


def test_a_run_in_the_prestarted_interpreter_starts_its_session_at_the_clock_pair_read_at_the_start(
    nothing_prestarted: None, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "empty.py"
    script.write_text("")
    prestart.start()
    early = prestart._prestarted
    assert early is not None
    running = Run(Target("script", str(script), ()), Options(engine=resolve_engine("auto")))
    assert (running.session.start_ticks, running.session.start_mono_ns) == early.clock_start[:2]
    running.drain_until_exit()
    assert running.finish().returncode == 0
