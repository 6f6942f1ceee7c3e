"""Reference profiler for Python 3.11, where cProfile only profiles the thread that enabled it.

Usage: python _cprofile_all_threads.py OUT.prof SCRIPT [ARGS...]

Runs SCRIPT as `python -m cProfile -o OUT.prof SCRIPT` does, and also gives every thread the program
starts its own cProfile.Profile (enabled from the thread's first profile event); all profiles are merged
into OUT.prof, so pstats' ncalls covers all threads, as `python -m cProfile` does by itself on 3.12+.
Not a test program: the call-count tests use it as ground truth for threaded programs on 3.11.
"""

import cProfile
import os
import pstats
import sys
import threading
from types import FrameType
from typing import Any

profiles: list[cProfile.Profile] = []
lock = threading.Lock()


def start_thread_profile(frame: FrameType, event: str, arg: Any) -> None:
    profile = cProfile.Profile()
    with lock:
        profiles.append(profile)
    profile.enable()  # replaces this hook in the new thread


def main() -> None:
    out, script = sys.argv[1], sys.argv[2]
    sys.argv[:] = sys.argv[2:]
    sys.path.insert(0, os.path.dirname(script))
    with open(script, "rb") as source:
        code = compile(source.read(), script, "exec")
    globs = {"__file__": script, "__name__": "__main__", "__package__": None, "__cached__": None}
    threading.setprofile(start_thread_profile)
    main_profile = cProfile.Profile()
    main_profile.enable()
    try:
        exec(code, globs)
    except SystemExit:
        pass
    finally:
        main_profile.disable()
        threading.setprofile(None)
        stats = pstats.Stats(main_profile)
        for profile in profiles:
            stats.add(profile)
        stats.dump_stats(out)


if __name__ == "__main__":
    main()
