"""Steering the agent while the program runs: the control channel, seen from
the monitor (its layout and rules are in records.h, read through `_core`).

`Control` posts commands (switch a function off or on, set how often the
threads read their CPU clock), follows their
acknowledgements (the agent echoes each command's number with the tick it
took effect) and keeps, per function, whether it is off and for how long it
was.  `ulma run` and `ulma attach` both map the session, so both have it.
Thread-safe through the session's lock (the view posts, the drain loop polls).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from ulma import _core

CTL_OFF: int = _core.LAYOUT["CTL_OFF"]
CTL_ON: int = _core.LAYOUT["CTL_ON"]
CTL_INTERVAL: int = _core.LAYOUT["CTL_INTERVAL"]
MAX_CPU_INTERVAL_US: int = _core.LIMITS["MAX_CPU_INTERVAL_US"]
CONTROL_SLOTS: int = _core.LAYOUT["CONTROL_SLOTS"]


class ChannelFull(Exception):
    """The agent has not acknowledged CONTROL_SLOTS commands yet (it runs
    no Python code, or it is not there): nothing more is posted."""


class Command:
    """One command posted (plain class: `ulma run` imports no dataclasses)."""

    __slots__ = ("done_ns", "fid", "interval_us", "off", "posted_ns", "seq", "status")

    def __init__(self, seq: int, fid: int, off: bool, posted_ns: int, interval_us: int = 0) -> None:
        self.seq = seq
        self.fid = fid  # a switch's function (0: not a switch)
        self.off = off
        self.interval_us = interval_us  # a new CPU clock interval (0: not one)
        self.posted_ns = posted_ns  # CLOCK_MONOTONIC when posted
        self.status = "pending"  # "applied" or "refused" once acknowledged
        self.done_ns: int | None = None  # when it took effect (the agent's tick, as CLOCK_MONOTONIC)

    def __repr__(self) -> str:
        return (f"Command(seq={self.seq}, fid={self.fid}, off={self.off}, interval_us={self.interval_us}, "
                f"status={self.status!r}, "
                f"posted_ns={self.posted_ns}, done_ns={self.done_ns})")


class Switched:
    """What the monitor knows of one function that was ever switched."""

    __slots__ = ("off_ns", "off_since_ns", "pending")

    def __init__(self) -> None:
        self.off_since_ns: int | None = None  # off now, since then
        self.off_ns = 0  # closed spans of being off
        self.pending = False  # a command for it awaits its acknowledgement

    def off_total(self, now_ns: int) -> int:
        """Time it was off so far."""
        open_span = now_ns - self.off_since_ns if self.off_since_ns is not None else 0
        return self.off_ns + max(open_span, 0)


class Control:
    """The monitor's end of the channel.  `core` is a `_core.Session`;
    `to_mono_ns` turns a session tick into CLOCK_MONOTONIC ns."""

    def __init__(self, core: _core.Session, lock: threading.Lock,
                 to_mono_ns: Callable[[int], int], now_ns: Callable[[], int]) -> None:
        self._core = core
        self._lock = lock
        self._to_mono_ns = to_mono_ns
        self._now_ns = now_ns
        self._pending: dict[int, Command] = {}
        self.done: list[Command] = []  # every acknowledged command, in order
        self.functions: dict[int, Switched] = {}
        self.intervals: list[tuple[int, int]] = []  # (when, µs): each CPU clock interval set while running

    def set_interval(self, us: int) -> Command:
        """Posts a new CPU clock interval (1 to MAX_CPU_INTERVAL_US µs); the agent refuses it
        when the run reads no CPU clock (--cpu-interval 0).  Raises ChannelFull, ValueError."""
        if not 1 <= us <= MAX_CPU_INTERVAL_US:
            raise ValueError(f"the CPU clock interval is 1 to {MAX_CPU_INTERVAL_US} microseconds")
        with self._lock:
            seq = self._core.post(CTL_INTERVAL, us)
            if not seq:
                raise ChannelFull("the agent has not taken the last commands yet")
            cmd = Command(seq, 0, False, self._now_ns(), interval_us=us)
            self._pending[seq] = cmd
        return cmd

    def switch(self, fids: Iterable[int], off: bool) -> list[Command]:
        """Posts one command per function; raises ChannelFull (after posting
        what fitted) when the agent is that far behind."""
        out = []
        with self._lock:
            for fid in fids:
                seq = self._core.post(CTL_OFF if off else CTL_ON, fid)
                if not seq:
                    raise ChannelFull("the agent has not taken the last commands yet")
                cmd = Command(seq, fid, off, self._now_ns())
                self._pending[seq] = cmd
                self.functions.setdefault(fid, Switched()).pending = True
                out.append(cmd)
        return out

    def poll(self) -> list[Command]:
        """Reads the acknowledgements of pending commands; returns those acknowledged now."""
        if not self._pending:
            return []
        acked = []
        with self._lock:
            for seq in sorted(self._pending):
                got = self._core.command(seq)
                if got is None:  # its slot was reused: cannot happen while we wait for it
                    got = ("refused", 0)
                status, ticks = got
                if status == "pending":
                    break  # in order: the later ones are pending too
                cmd = self._pending.pop(seq)
                cmd.status = status
                cmd.done_ns = self._to_mono_ns(ticks) if ticks else self._now_ns()
                acked.append(cmd)
            for cmd in acked:
                self.done.append(cmd)
                if cmd.interval_us:
                    if cmd.status == "applied" and cmd.done_ns is not None:
                        self.intervals.append((cmd.done_ns, cmd.interval_us))
                    continue
                sw = self.functions[cmd.fid]
                sw.pending = any(c.fid == cmd.fid and not c.interval_us for c in self._pending.values())
                if cmd.status != "applied" or cmd.done_ns is None:
                    continue
                if cmd.off and sw.off_since_ns is None:
                    sw.off_since_ns = cmd.done_ns
                elif not cmd.off and sw.off_since_ns is not None:
                    sw.off_ns += max(cmd.done_ns - sw.off_since_ns, 0)
                    sw.off_since_ns = None
        return acked

    def room(self) -> int:
        """Commands that can be posted now without waiting for the agent."""
        return max(CONTROL_SLOTS - len(self._pending), 0)

    def pending(self) -> bool:
        """Commands await their acknowledgement."""
        return bool(self._pending)

    def is_off(self, fid: int) -> bool:
        sw = self.functions.get(fid)
        return sw is not None and sw.off_since_ns is not None

    def counters(self) -> dict[str, int]:
        """posted, acked and refused (the agent's count: garbage included)."""
        with self._lock:
            c: dict[str, int] = self._core.control()
        return c
