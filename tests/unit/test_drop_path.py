"""The drop path: while a ring is full, every event is still accounted for, written or counted dropped."""

from __future__ import annotations

import gc
import operator
import os

from ulma import _core
from ulma.agent import resolve_engine
from ulma.format import records

CHUNKS = 200
CALLS = 500


def test_every_event_made_while_the_ring_fills_and_empties_is_written_or_counted_dropped(engine: str) -> None:
    fd = os.memfd_create("ulma-test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    session = _core.Session(fd, 4096, 4)  # a few hundred events: full within one chunk
    data: list[bytes] = []

    def leaf(i: int) -> int:
        return i

    # no collection while it runs: a finalizer of an earlier test's garbage would run Python code
    # in this thread (seen once: 4 events more than leaf's)
    gc.collect()
    gc.disable()
    try:
        # Between agent_start and agent_stop the only Python calls are leaf's (drain is C, range is
        # C): the program makes exactly 2 events per call.
        _core.agent_start(fd, resolve_engine(engine), cpu_interval_us=100)
        try:
            for k in range(CHUNKS):
                for i in range(CALLS):
                    leaf(i)
                if k % 4 == 0:  # the monitor drains now and then: room comes back, then fills again
                    _n, chunks = session.drain(copy=True)
                    data.extend(map(operator.itemgetter(1), chunks))  # C all the way: no event
        finally:
            _core.agent_stop()
        _n, chunks = session.drain(copy=True)
        data.extend(map(operator.itemgetter(1), chunks))
        (thread,) = session.threads()
    finally:
        gc.enable()
        session.close()
        os.close(fd)
    kinds = b"".join(data)[12::16]  # the kind byte of each 16-byte record
    written = kinds.count(records.CALL) + kinds.count(records.RETURN)
    dropped = thread["dropped"]
    assert dropped > 0 and thread["syncs"] > 5, thread  # it dropped, and wrote again after drops
    assert written + dropped == 2 * CHUNKS * CALLS, (written, dropped)
