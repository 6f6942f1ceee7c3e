"""The shared-memory session: creation, refusal of foreign sessions, replay of a real ring."""

from __future__ import annotations

import os
import struct

import pytest

from ulma import _core
from ulma.agent import resolve_engine
from ulma.format import records


def make_session(ring_bytes: int = 1 << 16) -> tuple[int, _core.Session]:
    fd = os.memfd_create("ulma-test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    return fd, _core.Session(fd, ring_bytes, 4)


def test_a_session_from_another_format_version_is_refused_with_a_clear_message() -> None:
    fd, session = make_session()
    try:
        header = bytearray(os.pread(fd, 16, 0))
        struct.pack_into("<I", header, 8, records.LAYOUT["FORMAT_VERSION"] + 1)
        os.pwrite(fd, bytes(header), 0)
        with pytest.raises(RuntimeError, match="another ulma version"):
            _core.agent_start(fd, "pep523")
    finally:
        session.close()
        os.close(fd)


def test_something_that_is_not_a_session_is_refused() -> None:
    fd = os.memfd_create("not-ulma", os.MFD_CLOEXEC)
    try:
        os.write(fd, b"\0" * 4096)
        with pytest.raises(RuntimeError, match="another ulma version"):
            _core.agent_start(fd, "pep523")
    finally:
        os.close(fd)


def test_the_agent_records_this_thread_and_the_monitor_replays_it(engine: str) -> None:
    fd, session = make_session(1 << 20)

    def leaf() -> int:
        return 1

    def branch() -> int:
        return leaf() + leaf()

    try:
        _core.agent_start(fd, resolve_engine(engine))  # engine: parametrized by conftest
        try:
            branch()
        finally:
            _core.agent_stop()
        session.drain()
        names = {sid: name for sid, _kind, _flags, name, _file, _line in session.symbols()}
        calls = {names[fid]: c for fid, c, _r, _s, _t in session.snapshot()[0]}
        prefix = "test_the_agent_records_this_thread_and_the_monitor_replays_it.<locals>."
        assert calls[prefix + "branch"] == 1
        assert calls[prefix + "leaf"] == 2
        (thread,) = session.threads()
        assert thread["dropped"] == 0 and thread["syncs"] == 1  # the thread's first event states its stack
    finally:
        session.close()
        os.close(fd)


def new_session(ring_bytes: int, max_threads: int) -> dict[str, int]:
    """The ring and thread counts of a session made with these, closed again."""
    fd = os.memfd_create("ulma-test", os.MFD_CLOEXEC)
    try:
        session = _core.Session(fd, ring_bytes, max_threads)
        counters = session.counters()
        session.close()
        return {"ring_events": counters["ring_events"], "max_threads": counters["max_threads"]}
    finally:
        os.close(fd)


@pytest.mark.parametrize("max_threads", [0, _core.LIMITS["MAX_THREADS"] + 1, 2**32 + 1, -1])
def test_a_thread_count_outside_the_limit_is_refused_not_wrapped_or_clamped(max_threads: int) -> None:
    # 2**32 + 1 used to wrap to 1 (the C int was parsed modulo 2**32); 0 became 1, 65537 65536
    with pytest.raises((ValueError, OverflowError)):
        new_session(1 << 20, max_threads)


def test_a_ring_above_the_limit_is_refused_and_the_limits_themselves_are_taken() -> None:
    most, least = _core.LIMITS["MAX_RING_BYTES"], _core.LIMITS["MIN_RING_BYTES"]
    event = records.LAYOUT["EVENT_BYTES"]
    with pytest.raises(ValueError, match="ring_bytes"):
        new_session(most + 1, 1)
    with pytest.raises(OverflowError):
        new_session(2**64 + (1 << 20), 1)  # was taken modulo 2**64: a 1 MiB ring
    assert new_session(most, 1) == {"ring_events": most // event, "max_threads": 1}
    assert new_session(least, _core.LIMITS["MAX_THREADS"]) == {
        "ring_events": least // event, "max_threads": _core.LIMITS["MAX_THREADS"]}
