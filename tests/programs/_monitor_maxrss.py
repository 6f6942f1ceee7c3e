"""Runs `ulma ARGS...` in this process and writes the monitor's own peak
resident memory (ru_maxrss of this process only, not of the program it
runs) as MONITOR_MAXRSS_KB=<n> on stderr at exit.  Not a test program: the
memory tests use it to read what ulma itself holds."""

import atexit
import resource
import runpy
import sys


def _report() -> None:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stderr.write(f"MONITOR_MAXRSS_KB={kb}\n")


atexit.register(_report)
sys.argv = ["ulma", *sys.argv[1:]]
runpy.run_module("ulma", run_name="__main__", alter_sys=True)
