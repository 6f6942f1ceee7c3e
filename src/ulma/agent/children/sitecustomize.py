"""Connects an exec'd Python child of a program that ``ulma run`` follows.

The bootstrap puts this directory first on PYTHONPATH (and the monitor's
socket in ULMA_CHILDREN) for the program's children only; Python's site
module imports ``sitecustomize`` at start-up, before the child's first line.
This one takes its directory off ``sys.path`` again, runs the
``sitecustomize`` it shadows (the system's or the user's, if any), then loads
ulma's agent -- from the directory ulma itself was loaded from, put on
``sys.path`` only while it is imported -- which asks the monitor for a
session.  A Python ulma cannot load into (another version, no built agent)
is reported to the monitor, which lists it unprofiled; the child runs as usual.
"""

import os
import sys


def _follow() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    shadowed = sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # type: ignore[import-not-found]  # noqa: F401  (the one this file hides)
    except ImportError:
        pass
    finally:
        if shadowed is not None:
            sys.modules["sitecustomize"] = shadowed
    address = os.environ.get("ULMA_CHILDREN", "")
    if not address:
        return
    root = os.path.dirname(os.path.dirname(os.path.dirname(here)))  # the directory holding ulma/
    sys.path.insert(0, root)
    try:
        from ulma.agent import bootstrap
    except Exception as exc:  # whatever stops the import: this Python runs unprofiled
        _unprofiled(address, f"cannot load ulma into Python {sys.version.split()[0]} "
                             f"({sys.executable}): {type(exc).__name__}: {exc}")
        return
    finally:
        if sys.path and sys.path[0] == root:
            del sys.path[0]
    bootstrap.follow_exec()


def _unprofiled(address: str, reason: str) -> None:
    """Tells the monitor (ulma.monitor.children: ``UNPROFILED <protocol>
    <reason, hex>``) why; written without ulma, which could not be loaded
    (the protocol's name is bootstrap.CHILD_PROTOCOL; a test checks they agree)."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(5.0)
        sock.connect("\0" + address[1:])
        sock.sendall(f"UNPROFILED ULMA1 {reason.encode()[:400].hex()}\n".encode())
    except OSError:
        pass  # no monitor to tell
    finally:
        sock.close()


_follow()
