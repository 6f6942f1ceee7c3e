"""Driving Debian's gdb to read a target's Python version and to queue a
pending call in it (CPython 3.11-3.13, where ulma's own injector does not
run: not x86-64, see ptrace.py; 3.14+ has sys.remote_exec, see remote.py).

gdb runs with no init file, no auto-loaded scripts (a target's directory
could hold a ``libpython*-gdb.py``: it is never run) and no debuginfod
(no network, no wait), and without the loader's and Python's variables from
ulma's environment (LD_PRELOAD, LD_AUDIT, LD_LIBRARY_PATH, PYTHON*): they are
meant for programs, not for gdb and the Python inside it; a sanitizer runtime
preloaded into gdb hangs it.  The commands are fixed text from ulma with only
numbers in them; the code for the target is written into a page mapped in
the target (mmap, a plain system call) eight bytes at a time, so gdb needs no
malloc() in the target, which may be stopped inside malloc() itself.  The
only function of the interpreter called while the target is stopped is
Py_AddPendingCall, made for calling from any thread without the GIL; the
interpreter runs the call itself, in the main thread, at its next safe point.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

from ulma.inject.ptrace import ptrace_refused

GDB_SECONDS = 60.0  # attaching and reading libpython's symbols; seconds on a loaded machine
PAGE = 4096
_PROT_READ_WRITE = 3
_MAP_PRIVATE_ANONYMOUS = 0x22
_FIRST, _LAST = 0x030B, 0x030D  # (major << 8 | minor): the CPythons gdb loads ulma into

_OPTIONS = ["-nx", "-batch", "-q",
            "-iex", "set auto-load off", "-iex", "set debuginfod enabled off",
            "-iex", "set pagination off", "-iex", "set confirm off"]


def _environment() -> dict[str, str]:
    """ulma's environment less what would change how gdb itself loads and runs."""
    return {k: v for k, v in os.environ.items()
            if k not in ("LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH") and not k.startswith("PYTHON")}


class GdbError(Exception):
    """One line: why gdb could not do it."""


def find() -> str:
    path = shutil.which("gdb")
    if path is None:
        raise GdbError("attaching to a program without an agent needs gdb (Debian package: gdb), "
                       "which is not on PATH")
    return path


def run(pid: int, commands: list[str]) -> str:
    """gdb's output (stdout, then stderr) after running `commands` in
    process `pid`; raises GdbError when it could not attach."""
    gdb = find()
    with tempfile.TemporaryDirectory(prefix="ulma-gdb-") as tmp:
        script = os.path.join(tmp, "commands.gdb")
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(commands) + "\n")
        try:
            done = subprocess.run([gdb, *_OPTIONS, "-p", str(pid), "-x", script],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  errors="replace", timeout=GDB_SECONDS, cwd=tmp,
                                  env=_environment())
        except subprocess.TimeoutExpired:
            raise GdbError(f"gdb did not finish with process {pid} within {GDB_SECONDS:.0f} s") from None
        except OSError as exc:
            raise GdbError(f"cannot run gdb: {exc.strerror}") from None
    output = done.stdout + "\n" + done.stderr
    if "ptrace: Operation not permitted" in output:
        raise GdbError(ptrace_refused(pid))
    if "ptrace: No such process" in output:
        raise GdbError(f"no process {pid}")
    if "Could not attach" in output or "Can't attach" in output:
        line = next((ln for ln in output.splitlines() if "attach" in ln), "")
        raise GdbError(f"gdb cannot attach to process {pid}: {line.strip()[:200]}")
    return output


def add_pending_call(pid: int, code: str) -> tuple[tuple[int, int] | None, bool]:
    """Reads the version of the CPython in process `pid` and, if it is 3.11
    to 3.13, queues PyRun_SimpleString(code) as a pending call there: its main
    thread runs it the next time it runs Python code.  One gdb session, so the
    process checked is the process injected.  Returns ((major, minor), queued);
    the version is None for a CPython older than 3.11 (no Py_Version).
    Raises GdbError for a process that is not Python, or when gdb fails."""
    data = code.encode("utf-8") + b"\0"
    size = (len(data) + PAGE - 1) // PAGE * PAGE
    data += b"\0" * (-len(data) % 8)
    version = "(*(unsigned long *) &Py_Version >> 16)"
    commands = [  # (an error ends gdb's script: what every CPython has comes first)
        'printf "ulma-python %lu\\n", (unsigned long) &Py_Initialize',
        'printf "ulma-version %lu\\n", *(unsigned long *) &Py_Version',
        f"if {version} >= {_FIRST:#x} && {version} <= {_LAST:#x}",
        "  set $ulma_page = (char *) ((void *(*)(void *, unsigned long, int, int, int, long)) mmap)"
        f"((void *) 0, {size}, {_PROT_READ_WRITE}, {_MAP_PRIVATE_ANONYMOUS}, -1, 0)",
        "  if $ulma_page == (char *) -1",
        '    printf "ulma-error mmap\\n"',
        "  else",
    ]
    for offset in range(0, len(data), 8):
        word = int.from_bytes(data[offset:offset + 8], "little")
        commands.append(f"    set *(unsigned long *) ($ulma_page + {offset}) = {word:#x}")
    commands += [
        '    printf "ulma-pending %d\\n", ((int (*)(void *, void *)) Py_AddPendingCall)'
        "((void *) PyRun_SimpleString, (void *) $ulma_page)",
        "  end",
        "end",
    ]
    output = run(pid, commands)
    if not re.search(r"^ulma-python \d+$", output, re.M):
        raise GdbError(f"process {pid} is not a Python process (no CPython interpreter in it)")
    found = re.search(r"^ulma-version (\d+)$", output, re.M)
    if not found:
        return None, False
    number = int(found.group(1))
    seen = (number >> 24, (number >> 16) & 0xFF)
    if not _FIRST <= number >> 16 <= _LAST:
        return seen, False
    pending = re.search(r"^ulma-pending (-?\d+)$", output, re.M)
    if pending and pending.group(1) == "0":
        return seen, True
    if "ulma-error mmap" in output:
        raise GdbError(f"cannot map a page in process {pid} for ulma's call")
    if pending:
        raise GdbError(f"process {pid} refused the pending call (its queue is full); try again")
    last = [ln.strip() for ln in output.splitlines() if ln.strip()]
    raise GdbError(f"gdb could not queue the call in process {pid}: {(last[-1] if last else '?')[:200]}")
