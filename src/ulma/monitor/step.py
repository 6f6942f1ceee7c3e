"""Single-step, seen from the monitor (records.h "Single-step").

`Stepper` posts the step commands through the control channel (acknowledged
like the others) and reads where the stepped thread stopped.  Only one
thread steps: the first whose call or return event comes after `stop()`;
the program's other threads run on.  Thread-safe through the session's lock.
"""

from __future__ import annotations

import threading

from ulma import _core
from ulma.format.plain import Frozen
from ulma.monitor.control import ChannelFull

_L = _core.LAYOUT
CTL_STEP_STOP: int = _L["CTL_STEP_STOP"]
CTL_STEP_NEXT: int = _L["CTL_STEP_NEXT"]
CTL_STEP_OVER: int = _L["CTL_STEP_OVER"]
CTL_STEP_CONTINUE: int = _L["CTL_STEP_CONTINUE"]
STATES: dict[int, str] = {_L["STEP_IDLE"]: "idle", _L["STEP_ARMED"]: "armed",
                          _L["STEP_STOPPED"]: "stopped", _L["STEP_RUNNING"]: "running",
                          _L["STEP_SIGNALED"]: "signaled"}
KINDS: dict[int, str] = {_L["CALL"]: "call", _L["RETURN"]: "return", _L["UNWIND"]: "unwind",
                         _L["YIELD"]: "yield", _L["RESUME"]: "resume", _L["THROW"]: "throw"}


class Stop(Frozen):
    """Where the stepped thread stopped: the event, its function and the
    thread's stack (ids; the event's function first, then its callers).
    (No dataclass: `ulma run` imports none, see ulma.format.plain.)"""

    __slots__ = ("fid", "frames", "kind", "os_tid", "seq", "slot", "truncated")

    seq: int  # the agent's count of stops
    slot: int  # the thread's ring
    os_tid: int
    kind: str  # "call", "return", ...
    fid: int
    frames: tuple[int, ...]
    truncated: bool

    def __init__(self, seq: int, slot: int, os_tid: int, kind: str, fid: int,
                 frames: tuple[int, ...], truncated: bool) -> None:
        for name, value in (("seq", seq), ("slot", slot), ("os_tid", os_tid), ("kind", kind),
                            ("fid", fid), ("frames", frames), ("truncated", truncated)):
            object.__setattr__(self, name, value)


class Stepper:
    """The monitor's end of single-step.  `core` is a `_core.Session`."""

    def __init__(self, core: _core.Session, lock: threading.Lock) -> None:
        self._core = core
        self._lock = lock
        self.posted: list[int] = []  # the step commands' numbers in the channel

    def _post(self, op: int) -> int:
        with self._lock:
            seq = self._core.post(op, 0)
        if not seq:
            raise ChannelFull("the agent has not taken the last commands yet")
        self.posted.append(seq)
        return seq

    def stop(self) -> int:
        """s: stop at the next call or return event."""
        return self._post(CTL_STEP_STOP)

    def next(self) -> int:
        """n: the stopped thread goes on to its next event."""
        return self._post(CTL_STEP_NEXT)

    def over(self) -> int:
        """N: ... to its next event at the same depth or lower (a call is stepped over)."""
        return self._post(CTL_STEP_OVER)

    def cont(self) -> int:
        """c / q: leave step mode; every thread runs free."""
        return self._post(CTL_STEP_CONTINUE)

    def acknowledged(self, seq: int) -> str:
        """"pending", "applied" or "refused" (the agent's word on command `seq`)."""
        with self._lock:
            got = self._core.command(seq)
        return got[0] if got is not None else "refused"

    def state(self) -> tuple[str, Stop | None]:
        """The agent's step state, and its last stop (None before the first)."""
        with self._lock:
            state, seq, slot, tid, kind, fid, _ticks, frames, truncated = self._core.step()
        stop = Stop(seq, slot, tid, KINDS.get(kind, f"kind {kind}"), fid, tuple(frames), truncated) \
            if seq else None
        return STATES.get(state, f"state {state}"), stop
