"""Python thread names in the session, so exports and reports can say "worker-3" instead of an OS
thread id (records.h "Thread names").

A thread is named as it starts: `threading` starts a thread through one of `_thread`'s starters
with the Thread's bound ``_bootstrap``; each starter is wrapped by a C one (``_core.thread_starter``)
that starts the thread on a C trampoline naming it before any of its code runs, so a thread that
lives a microsecond is named too, and the tracer sees no frame or call of ulma's there.  Threads
already running are named when a session starts, from names read before the agent's hooks are on
(reading them afterwards would put calls of threading's properties in the program's profile).
Nothing is imported that the program would import itself (`_thread` is built in; `threading` is
looked at only if it was imported already).  The wrappers stay once put in: with no session they
cost one check per thread started.  A name given after a thread started is not seen.
"""

from __future__ import annotations

import _thread
import sys

from ulma import _core

# _thread's thread starters, and the names threading keeps them under
_STARTERS = {"start_new_thread": "_start_new_thread", "start_joinable_thread": "_start_joinable_thread"}
_wrapped: set[str] = set()


def running() -> list[tuple[int, str]]:
    """(OS thread id, name) of the threading.Thread objects running now; call it before the hooks
    are on.  The attributes are read, not the properties (no call of the program's code)."""
    threading = sys.modules.get("threading")
    active = getattr(threading, "_active", None)
    if not isinstance(active, dict):
        return []
    named = []
    for thread in list(active.values()):
        tid, name = getattr(thread, "_native_id", None), getattr(thread, "_name", None)
        if isinstance(tid, int) and isinstance(name, str):
            named.append((tid, name))
    return named


def install(names: list[tuple[int, str]]) -> None:
    """Wraps the thread starters (once) and writes `names` (from ``running``) into the session."""
    threading = sys.modules.get("threading")
    for name, kept_as in _STARTERS.items():
        original = getattr(_thread, name, None)
        if original is None or name in _wrapped:
            continue
        _wrapped.add(name)
        wrapper = _core.thread_starter(original)
        setattr(_thread, name, wrapper)
        if threading is not None and getattr(threading, kept_as, None) is original:
            setattr(threading, kept_as, wrapper)
    for tid, thread_name in names:
        _core.agent_thread_name(tid, thread_name)
