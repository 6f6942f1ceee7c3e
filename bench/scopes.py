"""What a native scope (ulma.h's ULMA_SCOPE, begin + end) costs.

    python bench/scopes.py [--rounds R] [--scopes N]

Builds bench/workloads/native/scopes_ext.c twice with setuptools (as is, and with -DULMA_DISABLE),
then times N empty scopes in a C loop, in the thread's CPU time, in R interleaved rounds, one
process each:

  disabled     compiled with -DULMA_DISABLE: nothing is left
  no ulma      plain python: the module's hook finds no runtime at first use, then one branch
  ulma idle    ulma's runtime in the process (ulma._core imported), no session: the same branch
  traced       under `ulma run` (the monitor drains in its own process): two records a scope

and beside them the floor of any timed scope on this machine: two cycle-counter reads stored to
memory (clock pairs).  Prints the median ns per scope with the lowest and highest in brackets.
Target: a traced scope at most 15 ns.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
EXT = HERE / "workloads" / "native" / "scopes_ext.c"
TARGET_NS = 15.0

SETUP = """
from setuptools import Extension, setup
setup(name="scopes_ext", ext_modules=[Extension(
    "scopes_ext", [{source!r}], include_dirs=[{include!r}], define_macros={macros!r},
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror"])])
"""

CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "idle":
    import ulma._core  # noqa: F401
import scopes_ext
n = int(sys.argv[3])
scopes_ext.spin(n // 10)  # first use: the hook resolved
print("NS", scopes_ext.spin(n) / n, scopes_ext.clock_pairs(n) / n, file=sys.stderr)
"""


def build(where: Path, disabled: bool) -> Path:
    sys.path.insert(0, str(SRC))
    from ulma.include import get_include

    where.mkdir()
    macros = [("ULMA_DISABLE", "1")] if disabled else []
    (where / "setup.py").write_text(SETUP.format(source=str(EXT), include=get_include(), macros=macros))
    done = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=where,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"building {EXT.name} failed:\n{done.stderr[-2000:]}")
    return where


def one(cmd: list[str]) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    found = re.search(r"NS ([\d.e+-]+) ([\d.e+-]+)", done.stderr)
    if done.returncode or not found:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return float(found.group(1)), float(found.group(2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--scopes", type=int, default=2_000_000)
    args = p.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        child = Path(tmp) / "child.py"
        child.write_text(CHILD)
        on, off = build(Path(tmp) / "on", False), build(Path(tmp) / "off", True)
        n = str(args.scopes)
        modes = {
            "disabled": [py, str(child), str(off), "plain", n],
            "no ulma": [py, str(child), str(on), "plain", n],
            "ulma idle": [py, str(child), str(on), "idle", n],
            "traced": [py, "-m", "ulma", "run", "--no-report", str(child), str(on), "plain", n],
        }
        ns: dict[str, list[float]] = {m: [] for m in modes}
        floor: list[float] = []
        for _ in range(args.rounds):
            for mode, cmd in modes.items():
                scope, pair = one(cmd)
                ns[mode].append(scope)
                floor.append(pair)
    print(f"Python {sys.version.split()[0]}: ns per empty scope (begin + end), {args.scopes:,} scopes, "
          f"{args.rounds} rounds, thread CPU time: median [lowest .. highest]")
    for mode, values in ns.items():
        med = statistics.median(values)
        line = f"  {mode:<10} {med:7.2f} [{min(values):.2f} .. {max(values):.2f}]"
        if mode == "traced":
            line += f"   target <= {TARGET_NS:g} ns: {'ok' if med <= TARGET_NS else 'MISS'}"
        print(line)
    print(f"  {'floor':<10} {statistics.median(floor):7.2f} [{min(floor):.2f} .. {max(floor):.2f}]"
          "   (two cycle-counter reads stored: what any timed scope pays here)")


if __name__ == "__main__":
    main()
