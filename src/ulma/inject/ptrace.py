"""Queueing a pending call in a running CPython 3.11-3.13 on x86-64 Linux with
ptrace itself, no debugger (ulma.inject.gdb is the way elsewhere).

gdb's calls into a stopped process save and restore the thread's whole
extended register state, and on some machines (AMX tiles, a recent kernel:
gdb 13 says "Couldn't write extended state status: Bad address") it cannot
write it back: the call fails and the target is left with a broken system
call.  ulma's own way does only what it needs:

- it finds the functions by their names in the ELF files the target has
  mapped (its python, libpython, libc: ``.dynsym``, read with pyelftools);
- it stops the target's main thread (PTRACE_SEIZE, PTRACE_INTERRUPT: no
  SIGSTOP, nothing the program sees) and keeps its registers: the general
  ones, and the extended state as the kernel gives it (or the FPU and SSE
  state, where the kernel does not take the extended state back);
- it makes two plain calls there, as a signal handler would run: mmap() of a
  private page, into which it writes the code through /proc/PID/mem, then
  Py_AddPendingCall(PyRun_SimpleString, page), the one function of the
  interpreter made to be called from anywhere.  Each call returns to address
  0; the fault stops the thread there, the fault is never delivered.  A
  signal that comes meanwhile is held and delivered after;
- it puts every register back and lets the thread go on: a system call it
  was in (a sleep, a read) starts again as after any signal.

A call that does not return within CALL_SECONDS (a lock the thread itself
held when stopped) is abandoned: the registers are put back all the same.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import re
import signal
import sys
import time
from collections.abc import Iterable

PTRACE_CONT, PTRACE_GETREGS, PTRACE_SETREGS, PTRACE_GETFPREGS, PTRACE_SETFPREGS = 7, 12, 13, 14, 15
PTRACE_DETACH, PTRACE_GETREGSET, PTRACE_SETREGSET = 17, 0x4204, 0x4205
PTRACE_SEIZE, PTRACE_INTERRUPT = 0x4206, 0x4207
NT_X86_XSTATE = 0x202
WALL = 0x40000000  # __WALL: wait for a thread of another process too
FPREGS_BYTES = 512  # user_fpregs_struct (FXSAVE)
XSTATE_MAX_BYTES = 1 << 16  # more than any XSAVE area (AMX's is ~11 KiB)
STACK_GAP = 4096  # below the thread's stack pointer: its red zone (128 bytes) and more
CALL_SECONDS = 5.0
PAGE = 4096
PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS = 3, 0x22
FIRST, LAST = 0x030B, 0x030D  # (major << 8 | minor): the CPythons ulma loads into this way
WANTED = ("Py_Initialize", "Py_Version", "Py_AddPendingCall", "PyRun_SimpleString", "mmap")


class PtraceError(Exception):
    """One line: why ulma could not do it."""


class Regs(ctypes.Structure):
    """struct user_regs_struct (x86-64)."""

    _fields_ = [(name, ctypes.c_ulonglong) for name in (
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi",
        "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs")]


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def available() -> bool:
    """ulma's own injector runs here (x86-64 Linux)."""
    return sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")


def _status(pid: int | str, field: str) -> str | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def ptrace_refused(pid: int) -> str:
    """Why the kernel refuses ulma's ptrace of `pid`, with what to change."""
    tracer = _status(pid, "TracerPid")
    if tracer not in (None, "0"):
        return f"process {pid} is already traced by process {tracer} (a debugger?); ulma cannot trace it too"
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = f.read().strip()
    except OSError:
        scope = "0"  # no Yama
    capable = bool(int(_status("self", "CapEff") or "0", 16) >> 19 & 1)  # CAP_SYS_PTRACE
    why = f"the kernel does not let ulma trace process {pid}: "
    if scope == "3":
        return why + "kernel.yama.ptrace_scope is 3 (no tracing at all until reboot)"
    if scope in ("1", "2") and not capable:
        return why + (f"kernel.yama.ptrace_scope is {scope}; set it to 0 (sysctl kernel.yama.ptrace_scope=0) "
                      "or give ulma attach CAP_SYS_PTRACE")
    if not capable:
        return why + ("it is not dumpable, which takes CAP_SYS_PTRACE, and ulma attach lacks it "
                      "(in a container: --cap-add=SYS_PTRACE)")
    return why + "refused by a security module (seccomp, AppArmor or SELinux?)"


# ---- the target's functions, by name ---------------------------------------------------------

def _mapped_objects(pid: int) -> list[tuple[str, int]]:
    """(path, address of its first byte) of each file mapped from its start, in map order."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise PtraceError(f"no process {pid}") from None
    except OSError as exc:
        raise PtraceError(f"cannot read the memory map of process {pid}: {exc.strerror}") from None
    seen: dict[str, int] = {}
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/") and int(parts[2], 16) == 0:
            seen.setdefault(parts[5], int(parts[0].split("-")[0], 16))
    return list(seen.items())


def _candidates(objects: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """The objects that may hold the interpreter or libc: python*, libpython*, libc*."""
    pattern = re.compile(r"^(python[\d.]*[a-z]*|libpython[\d.]+[a-z]*\.so[\d.]*"
                         r"|libc\.so[\d.]*|libc-[\d.]+\.so)$")
    return [(path, start) for path, start in objects if pattern.match(os.path.basename(path))]


def find_symbols(pid: int, names: Iterable[str] = WANTED) -> dict[str, int]:
    """name -> address in process `pid` of each of `names` that its python,
    libpython or libc defines (dynamic symbols)."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    wanted = set(names)
    found: dict[str, int] = {}
    for path, start in _candidates(_mapped_objects(pid)):
        if not wanted - found.keys():
            break
        try:  # the target's own view of its files (another mount namespace: a container)
            f = open(f"/proc/{pid}/root{path}", "rb")  # noqa: SIM115 (closed below)
        except OSError:
            continue
        with f:
            try:
                elf = ELFFile(f)
                if elf.elfclass != 64 or elf["e_machine"] != "EM_X86_64":
                    continue  # (a 32-bit process: not one ulma calls into)
                loads = [seg["p_vaddr"] for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD"]
                dynsym = elf.get_section_by_name(".dynsym")
                if not loads or not isinstance(dynsym, SymbolTableSection):
                    continue
                base = start - (min(loads) & ~(PAGE - 1))
                for name in wanted - found.keys():
                    for sym in dynsym.get_symbol_by_name(name) or ():
                        if sym["st_shndx"] != "SHN_UNDEF" and sym["st_value"]:
                            found[name] = base + sym["st_value"]
                            break
            except Exception:  # a file pyelftools cannot read (damaged, not ELF): not one of these
                continue
    return found


# ---- one stopped thread ------------------------------------------------------------------------

def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    return libc


class Stopped:
    """Process `pid`'s main thread, stopped under ulma's ptrace, its registers
    kept; on leaving, put back and let go."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.libc = _libc()
        self.regs = Regs()
        self.fpregs = ctypes.create_string_buffer(FPREGS_BYTES)
        self.xstate = ctypes.create_string_buffer(XSTATE_MAX_BYTES)
        self.xstate_len = 0
        self.held: list[int] = []  # signals that came while ulma held the thread: delivered after
        self.mem = -1

    def _ptrace(self, request: int, addr: int | None = None, data: object = None) -> int:
        ctypes.set_errno(0)
        rc = int(self.libc.ptrace(request, self.pid, addr, data))
        if rc == -1 and ctypes.get_errno():
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        return rc

    def __enter__(self) -> Stopped:
        try:
            self._ptrace(PTRACE_SEIZE, 0, 0)
        except OSError as exc:
            if exc.errno == 3:  # ESRCH
                raise PtraceError(f"no process {self.pid}") from None
            raise PtraceError(ptrace_refused(self.pid)) from None
        try:
            self._ptrace(PTRACE_INTERRUPT, 0, 0)
            sig = self._wait_stop(time.monotonic() + CALL_SECONDS)
            if sig:
                self.held.append(sig)  # stopped on its way to the program: delivered after
            self._ptrace(PTRACE_GETREGS, 0, ctypes.addressof(self.regs))
            self._ptrace(PTRACE_GETFPREGS, 0, ctypes.addressof(self.fpregs))
            iov = IoVec(ctypes.addressof(self.xstate), XSTATE_MAX_BYTES)
            try:
                self._ptrace(PTRACE_GETREGSET, NT_X86_XSTATE, ctypes.addressof(iov))
                self.xstate_len = iov.len
            except OSError:
                self.xstate_len = 0  # no XSAVE: the FPU and SSE state is all there is
            self.mem = os.open(f"/proc/{self.pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        except BaseException:
            self._detach(restore=False)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._detach(restore=True)

    def _detach(self, *, restore: bool) -> None:
        if self.mem >= 0:
            os.close(self.mem)
            self.mem = -1
        if restore:
            self._ptrace(PTRACE_SETREGS, 0, ctypes.addressof(self.regs))
            restored = False
            if self.xstate_len:
                iov = IoVec(ctypes.addressof(self.xstate), self.xstate_len)
                try:
                    self._ptrace(PTRACE_SETREGSET, NT_X86_XSTATE, ctypes.addressof(iov))
                    restored = True
                except OSError:
                    pass
            if not restored:
                self._ptrace(PTRACE_SETFPREGS, 0, ctypes.addressof(self.fpregs))
        first = self.held[0] if self.held else 0
        with contextlib.suppress(OSError):  # (it ended meanwhile)
            self._ptrace(PTRACE_DETACH, 0, first)
        for sig in self.held[1:]:
            with contextlib.suppress(OSError):
                os.kill(self.pid, sig)

    def _wait_stop(self, deadline: float) -> int:
        """Waits for the thread's next stop; its signal (0 for a ptrace event stop)."""
        while True:
            got, status = os.waitpid(self.pid, os.WNOHANG | WALL)
            if got == self.pid:
                if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                    raise PtraceError(f"process {self.pid} ended while ulma held it")
                if os.WIFSTOPPED(status):
                    return 0 if status >> 16 else os.WSTOPSIG(status)
            if time.monotonic() > deadline:
                raise TimeoutError
            time.sleep(0.0005)

    def read(self, address: int, size: int) -> bytes:
        return os.pread(self.mem, size, address)

    def write(self, address: int, data: bytes) -> None:
        if os.pwrite(self.mem, data, address) != len(data):
            raise PtraceError(f"cannot write into process {self.pid}")

    def call(self, function: int, *args: int) -> int:
        """function(*args) in the stopped thread (at most six integer
        arguments); its return value (rax)."""
        regs = Regs.from_buffer_copy(self.regs)
        for name, value in zip(("rdi", "rsi", "rdx", "rcx", "r8", "r9"), args, strict=False):
            setattr(regs, name, value & (2**64 - 1))
        sp = ((self.regs.rsp - STACK_GAP) & ~0xF) - 8  # at entry rsp + 8 is 16-aligned, as after a call
        self.write(sp, bytes(8))  # the return address: 0, where the thread faults and stops
        regs.rsp, regs.rip, regs.rax = sp, function, 0
        regs.orig_rax = 2**64 - 1  # not in a system call: nothing to restart
        self._ptrace(PTRACE_SETREGS, 0, ctypes.addressof(regs))
        deadline = time.monotonic() + CALL_SECONDS
        self._ptrace(PTRACE_CONT, 0, 0)
        while True:
            try:
                sig = self._wait_stop(deadline)
            except TimeoutError:
                self._ptrace(PTRACE_INTERRUPT, 0, 0)
                self._wait_stop(time.monotonic() + CALL_SECONDS)
                raise PtraceError(f"process {self.pid} did not return from ulma's call within "
                                  f"{CALL_SECONDS:g} s (its main thread held a lock the call needs?); "
                                  "try again") from None
            if sig == signal.SIGSEGV:
                self._ptrace(PTRACE_GETREGS, 0, ctypes.addressof(regs))
                if regs.rip == 0:
                    return int(regs.rax)
                raise PtraceError(f"ulma's call crashed in process {self.pid} (at {regs.rip:#x}); "
                                  "the process was put back as it was")
            if sig and sig not in self.held:
                self.held.append(sig)  # the program's own: delivered once ulma lets go
            self._ptrace(PTRACE_CONT, 0, 0)


def add_pending_call(pid: int, code: str) -> tuple[tuple[int, int] | None, bool]:
    """As ulma.inject.gdb.add_pending_call, without gdb: reads the version of
    the CPython in process `pid` and, if it is 3.11 to 3.13, queues
    PyRun_SimpleString(code) as a pending call there.  Returns ((major,
    minor), queued); the version is None for a CPython older than 3.11 (no
    Py_Version).  Raises PtraceError (one line)."""
    symbols = find_symbols(pid)
    if "Py_Initialize" not in symbols:
        raise PtraceError(f"process {pid} is not a Python process (no CPython interpreter in it)")
    data = code.encode("utf-8") + b"\0"
    size = (len(data) + PAGE - 1) // PAGE * PAGE
    with Stopped(pid) as thread:
        if "Py_Version" not in symbols:
            return None, False
        number = int.from_bytes(thread.read(symbols["Py_Version"], 4), "little")
        seen = (number >> 24, (number >> 16) & 0xFF)
        if not FIRST <= number >> 16 <= LAST:
            return seen, False
        missing = [n for n in ("Py_AddPendingCall", "PyRun_SimpleString", "mmap") if n not in symbols]
        if missing:
            raise PtraceError(f"process {pid}: cannot find {', '.join(missing)} in its python or libc")
        page = thread.call(symbols["mmap"], 0, size, PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS, -1, 0)
        if page >= 2**64 - 4096 or page == 0:
            raise PtraceError(f"cannot map a page in process {pid} for ulma's call")
        thread.write(page, data)
        rc = thread.call(symbols["Py_AddPendingCall"], symbols["PyRun_SimpleString"], page)
        if rc & 0xFFFFFFFF:
            raise PtraceError(f"process {pid} refused the pending call (its queue is full); try again")
    return seen, True
