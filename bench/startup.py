"""Start-up: `ulma run --no-report` of an empty script against plain python,
interleaved, the median of each run's whole wall time (monitor start-up,
the profiled process's bootstrap and calibration, and the end included),
and which modules the program finds loaded at its first line.  Target
(issue 9 §8): within 50 ms of plain python, at most 5 standard modules more.

    python bench/startup.py [--rounds R] [--python PATH] [--compare SRC]

`--compare SRC`: another ulma tree's src/ folder (its C core built), whose
`ulma run` is timed in the same rounds, interleaved: a before/after, with
the difference taken round by round (the two runs of a round see about the
same machine).  Each figure is a median with its quartiles [p25-p75], and
the load average before and after is printed: on a shared machine that is
what the spread follows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
SHOW = "import sys\nloaded = sorted(sys.modules)\nimport json\njson.dump(loaded, sys.stdout)\n"


# As installed: ulma's modules are read from cached bytecode, not compiled on
# every start (this matters where PYTHONDONTWRITEBYTECODE is set).  The cache
# goes to a temporary directory, never into the source tree.
PYCACHE = tempfile.mkdtemp(prefix="ulma-startup-pycache-")


def run(cmd: list[str], src: Path = SRC) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(src) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYTHONPYCACHEPREFIX=PYCACHE)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def spread(xs: list[float]) -> str:
    """median [p25-p75] of seconds, in ms"""
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else xs * 3
    return f"{statistics.median(xs) * 1000:.1f} ms [{q[0] * 1000:.1f}, {q[2] * 1000:.1f}]"


def loads() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def child_alone(python: str, script: Path, rounds: int) -> tuple[float, float]:
    """(plain, profiled) median ms of the program's process alone: a session
    made in this process, the program started with the agent and waited for;
    ulma's command line and its report are not in it."""
    sys.path.insert(0, str(SRC))
    os.environ["PYTHONPATH"] = str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPYCACHEPREFIX"] = PYCACHE
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    from ulma.agent import resolve_engine
    from ulma.monitor import session as sessions

    options = sessions.Options(engine=resolve_engine("auto"))
    target = sessions.Target("script", str(script), ())
    plain, profiled = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run([python, str(script)], check=True)
        plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        running = sessions.Run(target, options)
        running.proc.wait()
        profiled.append(time.perf_counter() - t0)
        if running.finish().returncode != 0:
            sys.exit("the profiled empty script failed")
    return statistics.median(plain) * 1000, statistics.median(profiled) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--compare", type=Path, metavar="SRC", help="another ulma tree's src/, timed alongside")
    opts = p.parse_args()
    load_before = loads()
    with tempfile.TemporaryDirectory() as tmp:
        empty, show = Path(tmp, "empty.py"), Path(tmp, "show.py")
        empty.write_text("")
        show.write_text(SHOW)
        plain, ulma, program, other = [], [], [], []
        ulma_run = [opts.python, "-m", "ulma", "run", "--no-report", str(empty)]
        run(ulma_run)  # bytecode cached
        if opts.compare:
            run(ulma_run, opts.compare)
        for _ in range(opts.rounds):
            plain.append(run([opts.python, str(empty)])[0])
            ulma.append(run(ulma_run)[0])
            if opts.compare:
                other.append(run(ulma_run, opts.compare)[0])
        before = set(json.loads(run([opts.python, str(show)])[1]))
        under = set(json.loads(run([opts.python, "-m", "ulma", "run", "--no-report", str(show)])[1]))
        alone = child_alone(opts.python, empty, opts.rounds) if opts.python == sys.executable else None
    extra = sorted(under - before)
    ours = [m for m in extra if m == "ulma" or m.startswith("ulma.")]
    stdlib = [m for m in extra if m not in ours]
    # the monitor's side alone: importing ulma's command line
    program = [run([opts.python, "-c", "import ulma.cli.main, ulma.cli.run"])[0] for _ in range(opts.rounds)]
    pm, im = (statistics.median(x) * 1000 for x in (plain, program))
    over = [u - q for u, q in zip(ulma, plain, strict=True)]
    print(f"Python {sys.version.split()[0]}, {opts.rounds} rounds, load average {load_before} before, "
          f"{loads()} after; median [p25, p75]:")
    print(f"  empty script: plain {spread(plain)}, ulma run {spread(ulma)}; ulma run - plain, round by "
          f"round: +{spread(over)} (target +50 ms); importing ulma's command line {im - pm:.1f} ms "
          f"more than plain")
    if other:
        theirs = [o - q for o, q in zip(other, plain, strict=True)]
        gain = [u - o for u, o in zip(ulma, other, strict=True)]
        print(f"  against {opts.compare} in the same rounds: ulma run {spread(other)}; its ulma run - "
              f"plain: +{spread(theirs)}; this tree's ulma run - that one's, round by round: {spread(gain)}")
    if alone:
        print(f"the program's process alone (session made, bootstrap, calibration): {alone[1]:.1f} ms "
              f"against {alone[0]:.1f} ms (+{alone[1] - alone[0]:.1f} ms)")
    shutil.rmtree(PYCACHE, ignore_errors=True)
    print(f"modules at the program's first line: {len(before)} plain, {len(under)} under ulma; "
          f"standard ones more: {len(stdlib)} {stdlib} (target <= 5); ulma's own: {ours}")


if __name__ == "__main__":
    main()
