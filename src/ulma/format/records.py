"""Python twin of ``_core/records.h``.

The numbers come from the compiled extension (``_core.LAYOUT``), never from a
copy here, so the C writer and this reader cannot drift apart.  The pure-Python
decoder below is the reference the C replay is tested against.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from ulma import _core
from ulma.format.plain import Frozen

TYPE_CHECKING = False  # the monitor's start (`ulma run`) does without typing
if TYPE_CHECKING:
    from typing import Final

LAYOUT: Final[dict[str, int]] = dict(_core.LAYOUT)

EVENT_BYTES: Final = LAYOUT["EVENT_BYTES"]
CALL: Final = LAYOUT["CALL"]
RETURN: Final = LAYOUT["RETURN"]
UNWIND: Final = LAYOUT["UNWIND"]
YIELD: Final = LAYOUT["YIELD"]
RESUME: Final = LAYOUT["RESUME"]
THROW: Final = LAYOUT["THROW"]
SYNC: Final = LAYOUT["SYNC"]
SYNC_BEGIN: Final = LAYOUT["SYNC_BEGIN"]
SYNC_FRAME: Final = LAYOUT["SYNC_FRAME"]
SYNC_AFTER_DROP: Final = LAYOUT["SYNC_AFTER_DROP"]
SYNC_RESTATE: Final = LAYOUT["SYNC_RESTATE"]
SYMF_HIDDEN: Final = LAYOUT["SYMF_HIDDEN"]
SYMF_UNMEASURED: Final = LAYOUT["SYMF_UNMEASURED"]
SYM_CFUNC: Final = LAYOUT["SYM_CFUNC"]
SYM_PYFUNC: Final = LAYOUT["SYM_PYFUNC"]
C_CALL: Final = LAYOUT["C_CALL"]
C_RETURN: Final = LAYOUT["C_RETURN"]
CPU_SAMPLE: Final = LAYOUT["CPU_SAMPLE"]
CPU_RUN_DELAY: Final = LAYOUT["CPU_RUN_DELAY"]
CPU_NO_BLOCK: Final = LAYOUT["CPU_NO_BLOCK"]
EVF_UNMEASURED: Final = LAYOUT["EVF_UNMEASURED"]
EVF_DISPATCH: Final = LAYOUT["EVF_DISPATCH"]
EVF_AWAIT: Final = LAYOUT["EVF_AWAIT"]
TASK: Final = LAYOUT["TASK"]
TASKF_NEW: Final = LAYOUT["TASKF_NEW"]
TASKF_END: Final = LAYOUT["TASKF_END"]
SYM_TASK: Final = LAYOUT["SYM_TASK"]
TASK_SYMBOL_BASE: Final = LAYOUT["TASK_SYMBOL_BASE"]
SCOPE_BEGIN: Final = LAYOUT["SCOPE_BEGIN"]
SCOPE_END: Final = LAYOUT["SCOPE_END"]
MARK: Final = LAYOUT["MARK"]
COUNTER: Final = LAYOUT["COUNTER"]
COUNTER_VALUE: Final = LAYOUT["COUNTER_VALUE"]
SYM_SCOPE: Final = LAYOUT["SYM_SCOPE"]
SYM_MARK: Final = LAYOUT["SYM_MARK"]
SYM_COUNTER: Final = LAYOUT["SYM_COUNTER"]
# object lifecycle (records.h): types are symbols of their own id space
OBJ_NEW: Final = LAYOUT["OBJ_NEW"]
OBJ_FREE: Final = LAYOUT["OBJ_FREE"]
SYM_TYPE: Final = LAYOUT["SYM_TYPE"]
TYPE_SYMBOL_BASE: Final = LAYOUT["TYPE_SYMBOL_BASE"]
OBJF_UNKNOWN: Final = LAYOUT["OBJF_UNKNOWN"]
# objstats.h: the maker of objects made before tracing began or not kept by the agent; the one row
# the replay's table puts the objects of (function, type) pairs past its OBJ_MAX_ROWS in
OBJ_NO_CREATOR: Final = LAYOUT["OBJ_NO_CREATOR"]
SYM_THREAD: Final = LAYOUT["SYM_THREAD"]  # a Python thread's name, at THREAD_SYMBOL_BASE + OS tid
THREAD_SYMBOL_BASE: Final = LAYOUT["THREAD_SYMBOL_BASE"]
OBJ_MAX_ROWS: Final = LAYOUT["OBJ_MAX_ROWS"]
OBJ_PAST_ROWS: Final = LAYOUT["OBJ_PAST_ROWS"]
MAX_TYPES: Final = LAYOUT["MAX_TYPES"]

KIND_NAMES: Final[dict[int, str]] = {
    LAYOUT[name]: name.lower()
    for name in (
        "CALL", "RETURN", "UNWIND", "YIELD", "RESUME", "THROW", "C_CALL", "C_RETURN",
        "SCOPE_BEGIN", "SCOPE_END", "OBJ_NEW", "OBJ_FREE", "CPU_SAMPLE", "SYNC", "MARK", "TASK", "COUNTER",
    )
}

# u64 ticks | u32 id | u8 kind | u8 flags | u16 aux, little-endian
_EVENT = struct.Struct("<QIBBH")
assert _EVENT.size == EVENT_BYTES


class Event(Frozen):
    __slots__ = ("aux", "flags", "id", "kind", "ticks")

    ticks: int
    id: int
    kind: int
    flags: int
    aux: int

    def __init__(self, ticks: int, id: int, kind: int, flags: int, aux: int) -> None:
        object.__setattr__(self, "ticks", ticks)
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "aux", aux)


class Symbol(Frozen):
    """A symbol-table definition: what an event's id names."""

    __slots__ = ("file", "flags", "id", "kind", "line", "name")

    id: int
    kind: int
    flags: int
    name: str
    file: str
    line: int

    def __init__(self, id: int, kind: int, flags: int, name: str, file: str, line: int) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "file", file)
        object.__setattr__(self, "line", line)

    @property
    def hidden(self) -> bool:
        """ulma's own bootstrap code, never reported."""
        return bool(self.flags & SYMF_HIDDEN)

    @property
    def unmeasured(self) -> bool:
        """Excluded by a filter: its time is its callers' unmeasured time."""
        return bool(self.flags & SYMF_UNMEASURED)


def encode(events: list[Event]) -> bytes:
    """Packs events the way the agent writes them."""
    return b"".join(_EVENT.pack(e.ticks, e.id, e.kind, e.flags, e.aux) for e in events)


def decode(data: bytes) -> Iterator[Event]:
    """Unpacks whole records; a trailing partial record is ignored."""
    whole = len(data) - len(data) % EVENT_BYTES
    for ticks, id_, kind, flags, aux in _EVENT.iter_unpack(data[:whole]):
        yield Event(ticks, id_, kind, flags, aux)
