"""Human units for times and sizes."""

from __future__ import annotations

# what the time columns count: elapsed time, or CPU time only (here, not in live_rows,
# so that `ulma run` offers --clock without importing the views)
CLOCKS = ("wall", "cpu")


def fmt_ns(ns: float) -> str:
    """A duration in the unit that keeps three significant digits readable."""
    a = abs(ns)
    if a < 1_000:
        return f"{ns:.0f} ns"
    if a < 1_000_000:
        return f"{ns / 1_000:.1f} µs"
    if a < 1_000_000_000:
        return f"{ns / 1_000_000:.1f} ms"
    return f"{ns / 1_000_000_000:.2f} s"


def fmt_bytes(n: float) -> str:
    """A size in bytes, KiB, MiB or GiB, three significant digits."""
    a = abs(n)
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if a >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"
