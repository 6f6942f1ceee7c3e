"""The ways a workload is run, in the order one round runs them, and their command lines."""

import tempfile
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
WORKLOAD_DIR = BENCH_DIR / "workloads"
PROFWRAP = BENCH_DIR / "profwrap.py"


@dataclass(frozen=True)
class Mode:
    key: str  # stable name used in --modes and the JSON output
    label: str  # column header
    needs: frozenset[str]  # capabilities of the interpreter (see probe.py) this mode requires
    prefix: tuple[str, ...]  # arguments between the interpreter and the workload script


def _ulma(*options: str) -> tuple[str, ...]:
    return ("-m", "ulma", "run", "--no-report", *options)


PLAIN = Mode("plain", "plain", frozenset(), ())
MODES: tuple[Mode, ...] = (
    PLAIN,
    Mode("ulma", "ulma", frozenset({"ulma"}), _ulma()),
    # the same without CPU readings: ulma / this is what telling CPU from waiting costs (target <= 3 %)
    Mode("ulma_no_cpu", "ulma no-cpu", frozenset({"ulma"}), _ulma("--cpu-interval", "0")),
    # C functions traced too, each with its own row (sys.monitoring; a C profile function on 3.11)
    Mode("ulma_native", "ulma native", frozenset({"ulma"}), _ulma("--native-calls")),
    Mode("cprofile", "cProfile", frozenset(), (str(PROFWRAP), "cprofile")),
    Mode("yappi", "yappi", frozenset({"yappi"}), (str(PROFWRAP), "yappi")),
    Mode("viztracer", "VizTracer", frozenset({"viztracer"}), (str(PROFWRAP), "viztracer")),
    Mode(
        "floor_monitoring",
        "floor:monitoring",
        frozenset({"ulma", "monitoring"}),
        _ulma("--empty-hooks", "--engine", "monitoring"),
    ),
    Mode(
        "floor_pep523",
        "floor:pep523",
        frozenset({"ulma"}),
        _ulma("--empty-hooks", "--engine", "pep523"),
    ),
    # the recording floor, on the engine full tracing uses: each hook reads the clock and makes one
    # 16-byte store, nothing else; ulma's overhead / this one's is what ulma adds beyond recording
    Mode("recording_floor", "rec floor", frozenset({"ulma"}), _ulma("--recording-floor")),
    # an idle agent waiting for `ulma attach`: its cost must be ~nothing (target <= 2 % on mix)
    Mode("idle_agent", "idle agent", frozenset({"ulma"}), ("-m", "ulma.agent")),
    # full tracing plus the trace file (compressed, written by the monitor)
    Mode("ulma_record", "ulma -o", frozenset({"ulma"}),
         _ulma("-o", str(Path(tempfile.gettempdir()) / "ulma-bench.ulma"))),
)
MODE_KEYS = tuple(mode.key for mode in MODES)
WORKLOADS = ("fib", "mix", "io_wait", "threads", "thread_churn", "aio")


def workload_path(name: str) -> Path:
    return WORKLOAD_DIR / f"{name}.py"


def command(mode: Mode, python: str, workload: str, ulma_options: tuple[str, ...] = ()) -> list[str]:
    """The argv for one run; ulma_options (e.g. --ring-size) go to the full ulma mode only."""
    extra = ulma_options if mode.key == "ulma" else ()
    return [python, *mode.prefix, *extra, str(workload_path(workload))]


def select_modes(keys: list[str]) -> tuple[Mode, ...]:
    """The chosen modes in round order; plain is always kept since every ratio divides by it."""
    wanted = set(keys) | {PLAIN.key}
    return tuple(mode for mode in MODES if mode.key in wanted)
