"""How much CPU other processes used while the bench ran: the main source of noise in its ratios.

Busy time of the whole machine (from /proc/stat) minus the CPU time of the bench and its reaped
subprocesses (their monitors included) leaves what everything else used.
"""

import os
import resource
import time
from dataclasses import dataclass

_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user, nice, system, irq, softirq, steal (not idle, iowait)


def _machine_busy_s() -> float | None:
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()[1:]
    except OSError:
        return None  # not Linux: contention is simply not reported
    ticks = sum(int(fields[i]) for i in _BUSY_FIELDS if i < len(fields))
    return ticks / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@dataclass
class CpuWatch:
    wall: float
    busy: float | None
    own: float

    @classmethod
    def start(cls) -> "CpuWatch":
        return cls(time.monotonic(), _machine_busy_s(), _own_cpu_s())

    def others_cpus(self) -> float | None:
        """Average number of CPUs used by other processes since start()."""
        busy = _machine_busy_s()
        wall = time.monotonic() - self.wall
        if busy is None or self.busy is None or wall <= 0:
            return None
        return max(0.0, (busy - self.busy) - (_own_cpu_s() - self.own)) / wall
