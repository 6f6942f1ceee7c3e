"""The Python text ulma makes a target without an agent run.

It is fixed text: only numbers and strings chosen by ulma are put in, each
as a Python literal made by repr(), so nothing the target (or anyone) could
have planted is ever run.  It runs in the target's main thread, at a safe
point (a pending call, or sys.remote_exec on 3.14+), with the GIL held.

What it does, in order:

1. If ulma's deadline (CLOCK_MONOTONIC, which every process shares) has
   passed, nothing at all.
2. It connects to the attacher's report socket (an abstract socket with an
   unguessable name).  If that fails, the attacher gave up: nothing more.
3. It imports ulma's agent from the target's own environment or, when that
   fails, from the attacher's ulma (only when ulma's extension was built for
   this very interpreter: same extension suffix, so the same version and
   ABI), with that directory on sys.path only during the import.
4. It starts the same idle agent and listener as ``ulma.agent.install()``
   and answers ``OK <address>`` or ``ERR <reason>`` on the report socket.

It never raises (an exception would surface in whatever the program's main
thread was running), prints nothing, and binds no name in the program's
``__main__``: the body runs in a dictionary of its own.
"""

from __future__ import annotations

from string import Template

# Runs inside the target.  Imports only what ulma's agent imports anyway.
_BODY = '''\
def _load(fallback, suffix):
    import sys
    try:
        from ulma.agent import listener
        return listener, ""
    except ImportError as exc:
        first = "%s: %s" % (type(exc).__name__, exc)
    import _imp
    if fallback is None or suffix not in _imp.extension_suffixes():
        return None, first
    for name in [n for n in sys.modules if n == "ulma" or n.startswith("ulma.")]:
        del sys.modules[name]
    sys.path.append(fallback)
    try:
        from ulma.agent import listener
        return listener, ""
    except ImportError as exc:
        return None, "%s (and from %s: %s)" % (first, fallback, exc)
    finally:
        for i in range(len(sys.path) - 1, -1, -1):
            if sys.path[i] is fallback:
                del sys.path[i]
                break


def _attach(deadline, report, fallback, suffix):
    import time
    if time.monotonic_ns() > deadline:
        return
    import socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(2.0)
        try:
            sock.connect(report)
        except OSError:
            return
        try:
            listener, why = _load(fallback, suffix)
            if listener is None:
                answer = "ERR import " + why
            else:
                import sys
                try:  # the outer text's frame (see _OUTER): ATTACH waits until it is left
                    address = listener.install(sys._getframe(2))
                except TypeError:  # the program's own ulma, older than this argument
                    address = listener.install()
                answer = "OK " + address if address else "ERR the agent cannot listen"
        except BaseException as exc:
            answer = "ERR %s: %s" % (type(exc).__name__, exc)
        answer = "".join(c if c.isprintable() else "?" for c in answer)[:1000]
        sock.sendall(answer.encode("utf-8", "replace") + b"\\n")
    except BaseException:
        pass
    finally:
        sock.close()


_attach($deadline, $report, $fallback, $suffix)
'''

# What the interpreter is given (PyRun_SimpleString, sys.remote_exec): the
# body in a fresh namespace; nothing escapes, nothing is left in __main__.
_OUTER = '''\
try:
    exec($body, {"__name__": "_ulma_attach"})
except BaseException:
    pass
'''


def source(deadline_ns: int, report_address: str, fallback_dir: str | None, extension_suffix: str) -> str:
    """The text the target runs: `deadline_ns` on CLOCK_MONOTONIC, the
    attacher's abstract `report_address` ("\\0..."), the directory holding the
    attacher's ulma package (None: do not fall back on it) and the suffix of
    its C extension."""
    # one pass (string.Template): a value is never searched for more placeholders
    body = Template(_BODY).substitute(
        deadline=repr(int(deadline_ns)), report=repr(str(report_address)),
        fallback=repr(None if fallback_dir is None else str(fallback_dir)),
        suffix=repr(str(extension_suffix)))
    return Template(_OUTER).substitute(body=repr(body))
