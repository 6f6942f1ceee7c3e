"""A host's clock against the collector's, from timestamped round trips (NTP's way).

The collector sends its time t1; the host answers with t1, the time t2 it read
the ping and the time t3 it sent the answer; the collector reads t4 on its
arrival.  Then the host's clock is ahead of the collector's by
``((t2 - t1) + (t3 - t4)) / 2``, wrong by at most half the round trip spent on
the network, ``((t4 - t1) - (t3 - t2)) / 2`` -- whatever way the two legs
split it.  Pings are repeated and the tightest round trip is kept.

Drift (the two clocks running at different rates) is estimated from the tightest
round trip of the first and of the last third of the samples, when they are at
least ``DRIFT_SPAN_NS`` apart; it is reported, not applied: over a session of
minutes it moves a timestamp by less than the error bound of a round trip on
most networks (10 ppm over a minute: 0.6 ms).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DRIFT_SPAN_NS = 10_000_000_000
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

    @property
    def offset_ns(self) -> int:
        return round(self.best.offset) if self.best is not None else 0

    @property
    def error_ns(self) -> int | None:
        """The bound on |offset_ns - the true offset| (None: no round trip yet)."""
        return None if self.best is None else int(self.best.bound) + 1

    @property
    def drift_ppm(self) -> float | None:
        n = len(self.samples)
        if n < 6:
            return None
        first = min(self.samples[:n // 3], key=lambda s: s.bound)
        last = min(self.samples[-(n // 3):], key=lambda s: s.bound)
        span = last.t1 - first.t1
        if span < DRIFT_SPAN_NS:
            return None
        return (last.offset - first.offset) / span * 1e6

    def to_collector(self, host_ns: int) -> int:
        """A time read on the host as the collector's clock would have read it."""
        return host_ns - self.offset_ns

    def report(self) -> dict[str, int | float | None]:
        drift = self.drift_ppm
        return {"offset_ns": self.offset_ns if self.known else None, "error_ns": self.error_ns,
                "round_trip_ns": None if self.best is None else self.best.t4 - self.best.t1,
                "drift_ppm": None if drift is None else round(drift, 3), "samples": self.count}
