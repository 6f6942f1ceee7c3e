"""ulma's own ptrace injector (ulma.inject.ptrace, x86-64): the addresses it finds by name in a
process's ELF files are those the process's own loader resolved (ctypes in this very process),
and a call it makes in a stopped process returns what that function returns there (getpid: the
process's pid), the process going on as before."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ulma.inject import ptrace

pytestmark = pytest.mark.skipif(not ptrace.available(), reason="ulma's own injector is x86-64 Linux only")

SLEEPER = """\
import sys, time
print("ready", flush=True)
for i in range(40):
    time.sleep(0.01)
print(sum(i * 0.5 for i in range(1000)), flush=True)
"""


def address(library: ctypes.CDLL, name: str) -> int:
    value = ctypes.cast(getattr(library, name), ctypes.c_void_p).value
    assert value is not None
    return value


def test_the_functions_found_by_name_are_where_the_loader_put_them() -> None:
    found = ptrace.find_symbols(os.getpid())
    libc = ctypes.CDLL(None)
    assert found["Py_Initialize"] == address(ctypes.pythonapi, "Py_Initialize")
    assert found["Py_AddPendingCall"] == address(ctypes.pythonapi, "Py_AddPendingCall")
    assert found["PyRun_SimpleString"] == address(ctypes.pythonapi, "PyRun_SimpleString")
    assert found["Py_Version"] == ctypes.addressof(ctypes.c_ulong.in_dll(ctypes.pythonapi, "Py_Version"))
    assert found["mmap"] == address(libc, "mmap")


def test_a_call_in_a_stopped_process_returns_its_answer_and_the_process_goes_on() -> None:
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        getpid = ptrace.find_symbols(proc.pid, ["getpid"])["getpid"]
        with ptrace.Stopped(proc.pid) as thread:
            answers = [thread.call(getpid) for _ in range(3)]
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert answers == [proc.pid] * 3
    assert proc.returncode == 0 and out == f"{sum(i * 0.5 for i in range(1000))}\n"


HANDLER = """\
import signal, sys, time
got = []
signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
print("ready", flush=True)
deadline = time.monotonic() + 20
while not got and time.monotonic() < deadline:
    time.sleep(0.01)
print(f"usr1 {len(got)}", flush=True)
"""


def test_a_signal_that_comes_while_ulma_holds_the_thread_reaches_the_program_after() -> None:
    proc = subprocess.Popen([sys.executable, "-c", HANDLER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        getpid = ptrace.find_symbols(proc.pid, ["getpid"])["getpid"]
        with ptrace.Stopped(proc.pid) as thread:
            os.kill(proc.pid, signal.SIGUSR1)
            assert thread.call(getpid) == proc.pid
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and out == "usr1 1\n", out


MAPS_A_FILE = """\
import ctypes, mmap, sys
f = open(sys.argv[1], "rb")
m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
print(ctypes.cast(ctypes.pythonapi.Py_Initialize, ctypes.c_void_p).value, flush=True)
sys.stdin.read()
"""


def test_a_damaged_library_mapped_in_the_process_is_passed_over(tmp_path: Path) -> None:
    """A file named like a libpython, mapped from its start, whose ELF headers point past its end:
    it is skipped, and the real interpreter's functions are found all the same."""
    fake = tmp_path / "libpython3.99.so.1.0"
    with open("/proc/self/exe", "rb") as real:  # an ELF's first 4 KiB: headers pointing past them
        fake.write_bytes(real.read(4096))
    proc = subprocess.Popen([sys.executable, "-c", MAPS_A_FILE, str(fake)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        its_own = int(proc.stdout.readline())
        with open(f"/proc/{proc.pid}/maps") as maps:
            assert str(fake) in maps.read()
        found = ptrace.find_symbols(proc.pid)
    finally:
        proc.communicate("")
    assert found["Py_Initialize"] == its_own
