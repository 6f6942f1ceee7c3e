"""A program with an idle agent (`python -m ulma.agent objects_attach.py STOPFILE`) that made
OLD Things before anyone attached; once ulma's hook is set (ulma attached with --objects) it
drops those, makes NEW Things in `make_new` and keeps KEEP of them, and says so on stdout; it
exits when STOPFILE exists."""

from __future__ import annotations

import ctypes
import os
import sys
import time

OLD, NEW, KEEP = 1000, 500, 100


class Thing:
    pass


class Allocator(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in ("ctx", "malloc", "calloc", "realloc", "free")]


def object_malloc() -> int | None:
    """The object domain's malloc (PYMEM_DOMAIN_OBJ = 2)."""
    got = Allocator()
    ctypes.pythonapi.PyMem_GetAllocator(2, ctypes.byref(got))
    malloc: int | None = got.malloc
    return malloc


PLAIN_MALLOC = object_malloc()


def tracer_set() -> bool:
    """ulma's hook is on: a ref tracer (3.13), else an object allocator of its own (3.11, 3.12)."""
    if sys.version_info < (3, 13):
        return object_malloc() != PLAIN_MALLOC
    get = ctypes.pythonapi.PyRefTracer_GetTracer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    return bool(get(None))


def settled() -> bool:
    if not tracer_set():
        return False
    time.sleep(0.05)
    return tracer_set()


def make_new(kept: list[Thing]) -> None:
    for i in range(NEW):
        t = Thing()
        if i < KEEP:
            kept.append(t)


def main() -> None:
    stop = sys.argv[1]
    old = [Thing() for _ in range(OLD)]
    kept: list[Thing] = []
    # a ref tracer set, and still set 50 ms later (ulma's start sets one for a few microseconds
    # first, to check what this Python tells ref tracers)
    while not settled():
        if os.path.exists(stop):
            sys.exit("never attached")
        time.sleep(0.005)
    old.clear()
    make_new(kept)
    print(f"done old={OLD} new={NEW} kept={len(kept)}", flush=True)
    while not os.path.exists(stop):
        time.sleep(0.01)


if __name__ == "__main__":
    main()
