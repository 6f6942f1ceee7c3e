"""Human units for times."""

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
