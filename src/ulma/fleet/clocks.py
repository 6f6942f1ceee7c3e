"""A host's clock against the collector's, from timestamped round trips (NTP's way).

The collector sends its time t1; the host answers with t1, the time t2 it read
the ping and the time t3 it sent the answer; the collector reads t4 on its
arrival.  Then the host's clock is ahead of the collector's by
``((t2 - t1) + (t3 - t4)) / 2``, wrong by at most half the round trip spent on
the network, ``((t4 - t1) - (t3 - t2)) / 2`` -- whatever way the two legs
split it.  Pings are repeated and the tightest round trip is kept.

Drift (the two clocks running at different rates) is estimated from the tightest
round trip of the first and of the last third of the samples, when they are at
least ``DRIFT_SPAN_NS`` apart, and applied: the offset is then the line through
those two samples, ``offset(t) = offset_ns + drift * (t - ref_ns)`` (t on the
collector's clock).  Between the two samples it is wrong by at most the larger of
their bounds (whatever the errors, a point of the line is a weighted mean of
them); before the first and after the last, the error of the slope,
``(bound_a + bound_b) / span``, adds up: the reported bound covers a second
beyond the first and last round trips (pings come every second).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DRIFT_SPAN_NS = 2_000_000_000
MARGIN_NS = 1_000_000_000  # the bound covers this far beyond the first and last round trips
MAX_SAMPLES = 4096


@dataclass(slots=True)
class Sample:
    t1: int
    t2: int
    t3: int
    t4: int

    @property
    def offset(self) -> float:
        return ((self.t2 - self.t1) + (self.t3 - self.t4)) / 2

    @property
    def bound(self) -> float:
        return max((self.t4 - self.t1) - (self.t3 - self.t2), 0) / 2


@dataclass(slots=True)
class ClockEstimate:
    """The samples of one host's monitor; ``offset_ns``: host clock minus collector clock."""

    samples: list[Sample] = field(default_factory=list)
    best: Sample | None = None
    count: int = 0

    def add(self, t1: int, t2: int, t3: int, t4: int) -> None:
        if t4 < t1 or t3 < t2:  # not a round trip any clock could make
            return
        s = Sample(t1, t2, t3, t4)
        self.count += 1
        if self.best is None or s.bound < self.best.bound:
            self.best = s
        self.samples.append(s)
        if len(self.samples) > MAX_SAMPLES:  # keep every other one of the older half
            half = len(self.samples) // 2
            self.samples = self.samples[:half:2] + self.samples[half:]

    @property
    def known(self) -> bool:
        return self.best is not None

    def _line(self) -> tuple[Sample, Sample] | None:
        """The tightest samples of the first and of the last third, when far enough apart."""
        n = len(self.samples)
        if n < 6:
            return None
        first = min(self.samples[:n // 3], key=lambda s: s.bound)
        last = min(self.samples[-(n // 3):], key=lambda s: s.bound)
        if last.t1 - first.t1 < DRIFT_SPAN_NS:
            return None
        return first, last

    @property
    def offset_ns(self) -> int:
        """The offset at ``ref_ns`` (with no drift known: the tightest round trip's, everywhere)."""
        line = self._line()
        if line is not None:
            return round(line[0].offset)
        return round(self.best.offset) if self.best is not None else 0

    @property
    def ref_ns(self) -> int:
        """The collector's time at which the offset is ``offset_ns``."""
        line = self._line()
        if line is not None:
            return line[0].t1
        return self.best.t1 if self.best is not None else 0

    @property
    def error_ns(self) -> int | None:
        """The bound on |offset(t) - the true offset| over the samples' span and a second beyond
        (None: no round trip yet)."""
        if self.best is None:
            return None
        line = self._line()
        if line is None:
            return int(self.best.bound) + 1
        a, b = line
        span = b.t1 - a.t1
        beyond = max(a.t1 - (self.samples[0].t1 - MARGIN_NS), (self.samples[-1].t4 + MARGIN_NS) - b.t1, 0)
        return int(max(a.bound, b.bound) + (a.bound + b.bound) * beyond / span) + 1

    @property
    def drift_ppm(self) -> float | None:
        """How much faster the host's clock runs, in ns per ms (None: not known yet)."""
        line = self._line()
        if line is None:
            return None
        a, b = line
        return (b.offset - a.offset) / (b.t1 - a.t1) * 1e6

    def offset_at(self, collector_ns: int) -> float:
        """The host's clock minus the collector's, at the collector's time `collector_ns`."""
        drift = self.drift_ppm
        return self.offset_ns + (drift * 1e-6 * (collector_ns - self.ref_ns) if drift is not None else 0.0)

    def to_collector(self, host_ns: int) -> int:
        """A time read on the host as the collector's clock would have read it."""
        approx = host_ns - self.offset_ns
        return round(host_ns - self.offset_at(approx))

    def report(self) -> dict[str, int | float | None]:
        drift = self.drift_ppm
        return {"offset_ns": self.offset_ns if self.known else None, "error_ns": self.error_ns,
                "ref_ns": self.ref_ns if self.known else None,
                "round_trip_ns": None if self.best is None else self.best.t4 - self.best.t1,
                "drift_ppm": None if drift is None else round(drift, 6), "samples": self.count}
