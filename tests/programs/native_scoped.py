"""A program calling the C extension tests/programs/scoped_ext.c, which uses ulma's public header
(ulma.h): `python native_scoped.py EXT_DIR MODE [N]`.  Each mode prints one JSON line of what the program
did (its own counts and clocks: the ground truth).

  nested   run() -> scoped_ext.nested(N, cb): scope outer once, N inner scopes each calling cb(i)
  threads  run() -> scoped_ext.in_thread(N, 2000) (a thread Python never sees: thread_main once,
           N thread_work scopes) and scoped_ext.nogil(N, 2000) (N nogil_work scopes, GIL released)
  timed    run() -> scoped_ext.timed(N, 200000): N timed_work scopes; the thread CPU ns inside them
  marks    scoped_ext.marks(N): N marks and counter values 0 .. N-2, then -1 (and "wide")
  fork     run() -> nested(N, cb), then a child forked that runs nested(10 * N, None) and exits, then
           nested(N, cb) again in the parent
  flood    scoped_ext.nested(N, cb) as fast as it goes, again and again for 0.5 s (a ring that fills,
           and is drained meanwhile); prints how many times
"""

import json
import os
import sys
import time

sys.path.insert(0, sys.argv[1])

import scoped_ext  # type: ignore[import-not-found]

MODE = sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 100
called = 0


def cb(i: int) -> int:
    global called
    called += 1
    return i


def run() -> dict[str, int]:
    if MODE == "nested":
        scoped_ext.nested(N, cb)
        return {"cb": called}
    if MODE == "threads":
        scoped_ext.in_thread(N, 2000)
        scoped_ext.nogil(N, 2000)
        return {}
    if MODE == "timed":
        return {"inside_cpu_ns": scoped_ext.timed(N, 200000)}
    if MODE == "fork":
        scoped_ext.nested(N, cb)
        pid = os.fork()
        if pid == 0:
            scoped_ext.nested(10 * N, None)
            os._exit(0)
        os.waitpid(pid, 0)
        scoped_ext.nested(N, cb)
        return {"cb": called}
    if MODE == "marks":
        scoped_ext.marks(N)
        return {}
    if MODE == "flood":
        rounds, end = 0, time.perf_counter() + 0.5
        while time.perf_counter() < end:
            scoped_ext.nested(N, cb)
            rounds += 1
        return {"cb": called, "rounds": rounds}
    raise SystemExit(f"unknown mode {MODE}")


print(json.dumps(run()), flush=True)
