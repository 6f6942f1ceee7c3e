"""What a trace's JSON records (META, CALIB, END) may hold: every key a reader
keeps, with its type and range, in one place.

A record is parsed once, when the reader meets it, and what the rest of ulma
reads is only what passed: ``Meta``, ``Calib`` and ``End`` below, each key
present only with a value of its type within its range.  What does not pass
never reaches a report or an export:

- a record larger than ``MAX_JSON_BYTES``, nested deeper than ``MAX_DEPTH``
  (checked before parsing: the json module recurses once per level), not
  UTF-8, not JSON or not an object is refused whole (``Damaged``);
- a value that is not finite (``NaN``, ``Infinity`` -- which Python's json
  accepts -- or a float that overflows, ``1e400``), of the wrong type (a float
  or a boolean where a count is due), outside its range, or a string longer
  than ``MAX_TEXT`` or holding a lone surrogate (which json lets through) is
  dropped, and the record's problems named in one line.

Unknown keys are ignored: a newer writer may add some.
"""

from __future__ import annotations

import json
import math
import re
import types
from dataclasses import dataclass
from typing import Annotated, Any, Final, TypedDict, get_args, get_origin, get_type_hints

from ulma.monitor.eventloop import MAX_BLOCK_MS

MAX_JSON_BYTES: Final = 1 << 20  # an END with ~40 000 threads' drops and tids fits
MAX_DEPTH: Final = 8  # the writer's deepest is 2 (END's per-thread maps)
MAX_TEXT: Final = 256  # characters of a version, host, engine or clock name

U64_MAX: Final = (1 << 64) - 1
I64_MAX: Final = (1 << 63) - 1
# The agent keeps the probe cost in picoseconds in a 32-bit field (records.h, probe_ps).
PROBE_NS_MAX: Final = ((1 << 32) - 1) / 1000
# A calibration outside this is damage, not a clock (a tick of 1 fs to 1 ms); times computed
# from it would overflow.
NS_PER_TICK_RANGE: Final = (1e-6, 1e6)


@dataclass(frozen=True, slots=True)
class Range:
    """The closed range of a number, of a string's length, or of a map's values."""

    low: float
    high: float


Text = Annotated[str, Range(0, MAX_TEXT)]
Ticks = Annotated[int, Range(0, U64_MAX)]  # a clock reading (u64)
Count = Annotated[int, Range(0, I64_MAX)]  # events, ns, threads: what a signed 64-bit field holds
Pid = Annotated[int, Range(0, (1 << 31) - 1)]
NsPerTick = Annotated[float, Range(*NS_PER_TICK_RANGE)]
ProbeNs = Annotated[float, Range(0, PROBE_NS_MAX)]
# ring slot (a decimal string: JSON keys are strings) -> a count or an OS thread id
PerSlot = Annotated[dict[str, int], Range(0, I64_MAX)]
# a function's id (decimal) -> a count (ns it was switched off; 1 if off at the end)
PerId = Annotated[dict[str, int], Range(0, I64_MAX)]
MAX_LIST: Final = 256  # entries of a list of texts (--only/--exclude options)
Texts = Annotated[list[str], Range(0, MAX_TEXT)]  # each entry a Text; at most MAX_LIST of them


class Meta(TypedDict, total=False):
    """The first chunk: who wrote the trace and where its clock started."""

    ulma: Text
    python: Text
    host: Text
    engine: Text
    clock: Text
    monitor_pid: Pid
    start_ticks: Ticks
    start_mono_ns: Ticks
    start_real_ns: Ticks
    ring_events: Count
    ns_per_tick: NsPerTick  # a first calibration (2 ms), before any CALIB
    scope: Texts  # the --only / --exclude options in effect ("--only PATTERN", ...)
    loop_block_ms: Annotated[float, Range(0, MAX_BLOCK_MS)]  # --loop-block (ulma.cli.bounds)


class Calib(TypedDict, total=False):
    """The calibration so far, and once the agent started what it measured there
    (trace.AGENT_KEYS); written about once a second."""

    ns_per_tick: NsPerTick
    # the one calibration of the text log written in the same run (`ulma run --log`): the
    # text export uses it, so that both agree line for line
    text_ns_per_tick: NsPerTick
    probe_ns: ProbeNs
    scope_probe_ns: ProbeNs  # a gap closed by a native scope's begin record (ulma.h)
    scope_end_probe_ns: ProbeNs  # ... and by its end record
    cpu_samples: bool
    schedstat: bool
    native_calls: bool
    program_start_ticks: Ticks


class End(Calib, total=False):
    """The last chunk of a run that ended: its figures and final calibration."""

    # the engine the agent ran (META's may say "auto": an attachment's trace is opened before
    # the agent answers, so that nothing it drains meanwhile is left out)
    engine: Text
    wall_ns: Count
    returncode: Annotated[int, Range(-(1 << 31), (1 << 31) - 1)]
    program_pid: Pid
    dropped: PerSlot
    os_tid: PerSlot
    tool_id: Annotated[int | None, Range(0, 5)]  # sys.monitoring's tool ids; None: PEP 523
    hooks_displaced: Count
    untraced_threads: Count
    untraced_events: Count
    symbols_lost: Count
    forked_children: Count
    tasks_untold: Count  # asyncio tasks the agent gave no number (records.h "TASK records")
    off_ns: PerId  # functions switched off while running (x, X, the dial): how long each was off
    off_now: PerId  # those still off at the end (value 1)
    # --objects (session.objects_info): how objects were seen, and what the agent could not keep
    objects_mechanism: Text
    objects_untracked: Count
    objects_types_overflow: Count
    objects_displaced: Count


class Damaged(Exception):
    """The record is refused whole; the message says why."""


@dataclass(frozen=True, slots=True)
class _Field:
    kind: Any  # int, float, str, bool or dict
    range: Range | None
    nullable: bool


def _fields(record: type) -> dict[str, _Field]:
    out = {}
    for key, hint in get_type_hints(record, include_extras=True).items():
        limit = None
        if get_origin(hint) is Annotated:
            hint, limit = get_args(hint)[0], get_args(hint)[1]
        options = get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        nullable = type(None) in options
        (base,) = (t for t in options if t is not type(None))
        kind = get_origin(base) or base
        out[key] = _Field(kind, limit, nullable)
    return out


FIELDS: Final[dict[type, dict[str, _Field]]] = {r: _fields(r) for r in (Meta, Calib, End)}


class _NotFinite:
    """What NaN, Infinity and overflowing floats parse to: no field accepts it (its
    key is then named in the record's warning, where a NaN would pass unseen)."""


_NOT_FINITE: Final = _NotFinite()


def _float(text: str) -> float | _NotFinite:
    value = float(text)
    return value if math.isfinite(value) else _NOT_FINITE


def _constant(_text: str) -> _NotFinite:
    return _NOT_FINITE


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_INNERMOST = re.compile(rb"\[\]|\{\}")


def _deeper_than(data: bytes, limit: int) -> bool:
    """Whether the JSON text nests more than `limit` levels (or its brackets do not
    pair up, which json would refuse anyway), in at most `limit` linear passes and
    without recursion: strings out, then only the brackets, then innermost pairs
    peeled one level a pass."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    for _ in range(limit):
        if not brackets:
            return False
        brackets = _INNERMOST.sub(b"", brackets)
    return bool(brackets)


def parse(data: bytes) -> dict[str, Any]:
    """A JSON object from a record's bytes, NaN and infinities replaced by a value no
    field accepts; Damaged if it is too large, too deep or not a JSON object."""
    if len(data) > MAX_JSON_BYTES:
        raise Damaged(f"larger than {MAX_JSON_BYTES >> 20} MiB")
    if _deeper_than(data, MAX_DEPTH):
        raise Damaged(f"nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(data, parse_float=_float, parse_constant=_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise Damaged("not JSON") from None
    if not isinstance(value, dict):
        raise Damaged("not a JSON object")
    return value


def _fits(value: Any, field: _Field) -> bool:
    """Whether a scalar `value` is of `field`'s type and within its range."""
    if value is None:
        return field.nullable
    r = field.range
    if field.kind is bool:
        return isinstance(value, bool)
    if field.kind is str:  # json lets lone surrogates through ("\ud800"): no UTF-8 writer takes them
        return isinstance(value, str) and (r is None or len(value) <= r.high) and _utf8(value)
    if field.kind is int:
        return isinstance(value, int) and not isinstance(value, bool) \
            and (r is None or r.low <= value <= r.high)
    if field.kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool) \
            and (r is None or r.low <= value <= r.high)
    raise TypeError(field.kind)  # pragma: no cover -- a hint above that this module does not know


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _slots(value: Any, field: _Field) -> dict[str, int]:
    """The entries of a per-slot map whose key is a ring slot and whose value fits."""
    entry = _Field(int, field.range, False)
    return {k: v for k, v in value.items()
            if k.isascii() and k.isdecimal() and len(k) <= 10 and _fits(v, entry)}


def _texts(value: list[Any], field: _Field) -> list[str]:
    """The entries of a list of texts that fit (the first MAX_LIST)."""
    entry = _Field(str, field.range, False)
    return [v for v in value[:MAX_LIST] if _fits(v, entry)]


def check(record: type, raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The keys of `raw` that `record` (Meta, Calib or End) knows, each kept if its
    value fits (a map: its entries that fit); and the names of those that did not."""
    out: dict[str, Any] = {}
    bad = []
    for key, field in FIELDS[record].items():
        if key not in raw:
            continue
        value = raw[key]
        if field.kind is dict:
            if isinstance(value, dict):
                out[key] = _slots(value, field)  # a damaged entry does not lose the others
                if len(out[key]) == len(value):
                    continue
        elif field.kind is list:
            if isinstance(value, list):
                out[key] = _texts(value, field)
                if len(out[key]) == len(value):
                    continue
        elif _fits(value, field):
            out[key] = float(value) if field.kind is float else value
            continue
        bad.append(key)
    return out, bad
