"""What an interpreter offers (version, ulma, yappi, VizTracer), asked in its own process."""

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .modes import BENCH_DIR, workload_path

# Runs inside the probed interpreter: it must stay plain stdlib Python that 3.11 accepts.
_PROBE = r"""
import importlib, importlib.metadata, json, platform, sys

def version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"

tools, errors = {}, {}
for module, dist in (("ulma._core", "ulma"), ("yappi", "yappi"), ("viztracer", "viztracer")):
    try:
        importlib.import_module(module)
    except Exception as exc:  # a broken build must read as "not available", not crash the bench
        errors[dist] = f"{type(exc).__name__}: {exc}"
    else:
        tools[dist] = version(dist)
print(json.dumps({
    "executable": sys.executable,
    "version": platform.python_version(),
    "version_info": list(sys.version_info[:2]),
    "tools": tools,
    "errors": errors,
}))
"""

# Runs inside the measured interpreter. The default stream shape always; the fib-shaped one
# (a single hot function, the monitor's easiest case) where this ulma's bench_drain offers it.
_DRAIN = r"""
import json
from ulma._core import bench_drain
rates = {{"default": bench_drain({n})}}
try:
    rates["fib"] = bench_drain({n}, pattern="fib")
except TypeError:
    pass
print(json.dumps(rates))
"""


@dataclass
class Interpreter:
    path: str  # as given on the command line
    executable: str  # its sys.executable: runs start this, so a pyenv shim adds no start-up cost
    version: str
    version_info: tuple[int, int]
    tools: dict[str, str]  # available tool -> its version
    errors: dict[str, str] = field(default_factory=dict)  # unavailable tool -> why

    def capabilities(self) -> frozenset[str]:
        caps = set(self.tools)
        # The sys.monitoring engine exists from 3.12 on only.
        if "ulma" in caps and self.version_info >= (3, 12):
            caps.add("monitoring")
        return frozenset(caps)


class ProbeError(Exception):
    pass


def probe(python: str, cwd: Path) -> Interpreter:
    try:
        done = subprocess.run(
            [python, "-c", _PROBE],
            check=False,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProbeError(f"{python}: cannot run it ({exc})") from exc
    if done.returncode != 0:
        raise ProbeError(f"{python}: probe failed: {_last_line(done.stderr)}")
    info = json.loads(done.stdout)
    return Interpreter(
        path=python,
        executable=info["executable"],
        version=info["version"],
        version_info=(info["version_info"][0], info["version_info"][1]),
        tools=info["tools"],
        errors=info["errors"],
    )


def drain_rates(python: str, cwd: Path, events: int, repeat: int) -> tuple[dict[str, float], str | None]:
    """Best of `repeat` bench_drain runs per stream shape: the best shows the capability."""
    best: dict[str, float] = {}
    for _ in range(repeat):
        done = subprocess.run(
            [python, "-c", _DRAIN.format(n=events)],
            check=False,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            return {}, _last_line(done.stderr)
        for shape, rate in json.loads(done.stdout.strip().splitlines()[-1]).items():
            if rate <= 0.0:  # a drain that consumed nothing is a broken benchmark, not a slow one
                return {}, f"bench_drain({events}) returned {rate!r} ({shape}): it drained no events"
            best[shape] = max(best.get(shape, 0.0), float(rate))
    return best, None


def readings_cost(
    python: str, cwd: Path, workloads: list[str]
) -> tuple[dict[str, dict[str, float]], str | None]:
    """readings.py under `python`: what CPU readings cost, paired in one process."""
    script = Path(__file__).resolve().parent / "readings.py"
    done = subprocess.run([python, str(script), *workloads], check=False, cwd=cwd, capture_output=True,
                          text=True, timeout=1800)
    if done.returncode != 0:
        return {}, _last_line(done.stderr) or f"exit code {done.returncode}"
    data: dict[str, dict[str, float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return data, None


@dataclass
class EventCounts:
    events: int | None = None
    dropped: int | None = None
    threads: int | None = None
    error: str | None = None


def ulma_counts(
    python: str, workload: str, cwd: Path, ulma_options: tuple[str, ...], timeout: float
) -> EventCounts:
    """One extra, untimed ulma run with --json, for the events and drops a full run produces."""
    with tempfile.TemporaryDirectory(prefix="ulma-bench-") as tmp:
        out = Path(tmp) / "report.json"
        cmd = [
            python,
            "-m",
            "ulma",
            "run",
            "--no-report",
            *ulma_options,
            "--json",
            str(out),
            str(workload_path(workload)),
        ]
        try:
            done = subprocess.run(
                cmd,
                check=False,
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return EventCounts(error=f"timed out after {timeout:.0f} s")
        if done.returncode != 0 or not out.exists():
            return EventCounts(error=_last_line(done.stderr) or f"exit code {done.returncode}")
        data = json.loads(out.read_text())
    return EventCounts(
        events=data.get("events"),
        dropped=data.get("dropped"),
        threads=data.get("threads"),
    )


def install(python: str) -> list[str]:
    """Install the optional profilers and this repository into `python` (only on --install).

    Returns the commands that failed: the bench then runs with what is there and shows n/a.
    """
    repo = BENCH_DIR.parent
    failed = []
    for args in (["-r", str(BENCH_DIR / "requirements.txt")], [str(repo)]):
        cmd = [python, "-m", "pip", "install", *args]
        print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(" ".join(cmd))
    return failed


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
