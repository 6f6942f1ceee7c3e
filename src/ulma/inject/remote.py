"""Python 3.14+: ``sys.remote_exec`` runs a script in another CPython of
the same version at its next safe point, without gdb.

UNTESTED: no Python 3.14 on the machines ulma is developed on.  Written to
the documented interface (sys.remote_exec(pid, script_path))."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable


class RemoteExecError(Exception):
    """One line: why sys.remote_exec could not do it."""


def available(target: tuple[int, int] | None) -> bool:
    """sys.remote_exec can reach a target of this (major, minor): it needs
    the same version as the one running ulma."""
    return hasattr(sys, "remote_exec") and target == sys.version_info[:2]


def run(pid: int, code: str, wait: Callable[[], bool]) -> None:
    """Has process `pid` run `code` through sys.remote_exec; `wait()` waits
    for its answer (True: it came).  The script's file is ours, private; it
    is removed once the target answered.  If it did not, the file stays: the
    target reads it when it gets to it (and then does nothing, ulma having
    given up), where a missing file would be an error in its stderr."""
    remote_exec: Callable[[int, str], None] = sys.remote_exec  # type: ignore[attr-defined]
    tmp = tempfile.mkdtemp(prefix="ulma-inject-")  # 0700
    path = os.path.join(tmp, "attach.py")
    answered = False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(code)
        try:
            remote_exec(pid, path)
        except PermissionError:
            answered = True  # nothing was queued
            raise RemoteExecError(f"the kernel does not let ulma reach into process {pid} (see "
                                  "kernel.yama.ptrace_scope, or CAP_SYS_PTRACE in a container)") from None
        except (OSError, RuntimeError, ValueError) as exc:
            answered = True
            raise RemoteExecError(f"sys.remote_exec failed on process {pid}: {exc}") from None
        answered = wait()
    finally:
        if answered:
            shutil.rmtree(tmp, ignore_errors=True)
