"""Naming a function for the first time while an exception propagates through it leaves that exception alone.

The agent names (interns) a code object the first time it sees it in a session. When the session starts
again while a frame runs (a second attach), that frame's code is named anew when its exception unwinds
it. Naming can fail (a name that is no valid UTF-8), and the agent clears what it fails at: it must not
clear, replace or change the exception the program is raising.
"""

from __future__ import annotations

import os
import traceback

from ulma import _core
from ulma.agent import resolve_engine


class Marker(Exception):
    pass


def test_an_exception_unwinding_a_function_named_during_the_unwind_keeps_identity_and_traceback(
    engine: str,
) -> None:
    fd = os.memfd_create("ulma-test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    session = _core.Session(fd, 1 << 20, 8)
    raised = Marker("from the frame named during unwind")

    def restarts_then_raises() -> None:
        _core.agent_stop()
        _core.agent_start(fd, resolve_engine(engine))  # a new session generation: names are new
        raise raised

    # a qualified name that cannot be encoded as UTF-8: naming it fails, inside the agent
    restarts_then_raises.__code__ = restarts_then_raises.__code__.replace(co_qualname="bad\udcffname")
    try:
        _core.agent_start(fd, resolve_engine(engine))  # engine: parametrized by conftest
        try:
            restarts_then_raises()
        except Marker as caught:
            got: BaseException = caught
        except BaseException as other:  # what replaced it is the failure shown
            got = other
        finally:
            _core.agent_stop()
        assert got is raised, f"the program got {got!r} instead of its own exception"
        frames = [f.name for f in traceback.extract_tb(got.__traceback__)]
        assert frames[-1] == "restarts_then_raises", frames
    finally:
        session.close()
        os.close(fd)
