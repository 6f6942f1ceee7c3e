"""The dial: overhead against detail (`ulma run --budget PCT`).

The monitor estimates what tracing costs the program: every event the agent
writes costs it the price of an event (`event_ns`: what switching a function
off saves per event, measured in a child process, see ulma/monitor/price.py;
until it answers, the start-up probe cost `probe_ns`, see
ulma/agent/calibrate.py, which read about half of what an event costs fib
on 3.12), so over the refresh windows of the last SMOOTH_S the estimate is

    overhead % of plain = 100 * events * event_ns / (window - events * event_ns)

where the window is the CPU time the program's threads had in them (from
/proc/PID/task/*/schedstat: on a busy machine the program gets less than the
wall window, and several busy threads get more), or the wall window where the
kernel does not say.  The program's own time is that less what the probes
took.  Judged over several windows, a drain that read late (the monitor
starved on a busy machine) moves events from one window to the next, not
out of their sum; a window whose events cost more than its CPU time is
judged with the next one.  When it is over the budget the dial switches functions off through
the control channel -- the same OFF command as the view's `x` --
cheapest detail first: the functions whose probes cost most for the time
they show (their events' cost over their total time, i.e. many short calls),
until the estimate left is under the budget.  A switched-off function's
counts stop exactly; its time is its callers' (marked, see profile.py).

It switches them on again when the program's shape changes: when what is
still traced runs at a rate more than twice (or less than half) the one seen
after the last decision, the estimate having moved by more than a quarter of
the budget, while the estimate is under half the budget, every
function it switched off is switched on for a window and judged again.  Such
a retry is spaced by a back-off (1 s, doubled each time it ends with the same
functions off, at most 32 s), so a program whose shape does not change pays
for it at most a window every so often.

Everything here runs in the drain loop's thread, after a drain.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass, field

from ulma.monitor.control import ChannelFull, Control
from ulma.monitor.price import Pricing
from ulma.monitor.profile import FunctionStats

# a function is worth switching off only if its probes are at least this share
# of the window's estimated cost: the long tail saves nothing
MIN_SHARE = 0.005
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 32.0
# counts are read this long after an OFF was acknowledged: a ring publishes
# every ULMA_PUBLISH_EVERY events, and a quiet thread's tail is read after 20 ms
SETTLE_NS = 60_000_000
# a window whose events cost more than the program's CPU time in it is judged
# with the next one (a drain that lagged), up to this long (a price too high
# would otherwise hold a fully traced program back for that long)
LAG_MAX_S = 0.2
# the estimate is judged over the windows of this long (those since the last switch)
SMOOTH_S = 0.1
# for FAST_FOR_S from the first window, windows are FAST_WINDOW_S long and a
# switch's window starts when the agent applied it: every millisecond a hot function stays traced at
# the start costs a short program its share of the budget (fib traced for
# 40 ms of a 0.35 s run: 6 % of it)
FAST_WINDOW_S = 0.005
FAST_FOR_S = 0.3
# functions are switched off until the estimate left is at most this share of
# the budget: room for the price's error and for the next window's jitter,
# so that one decision does what would otherwise take several
MARGIN = 0.7
# the price of an event: the median of the latest PRICES measured, measured again
# REPRICE_FIRST_S after the first, then at doubling gaps up to REPRICE_MAX_S
PRICES = 7
REPRICE_FIRST_S = 0.5
REPRICE_MAX_S = 30.0


@dataclass(slots=True)
class Switch:
    """One function the dial switched off."""

    fid: int
    name: str
    at_s: float  # seconds since the dial started, when it was posted
    rate: float  # its events per second when chosen
    calls: int | None = None  # its exact count up to the switch (None: not read yet)
    back_on_s: float | None = None  # when the dial switched it on again
    done_ns: int | None = None  # when the agent applied it (CLOCK_MONOTONIC)


@dataclass(slots=True)
class DialState:
    """What the view and the report show."""

    budget: float  # per cent of the plain run time
    estimate: float = 0.0  # per cent, the last window
    # (seconds since start, estimated overhead %) per window, thinned to at most HISTORY points
    history: list[tuple[float, float]] = field(default_factory=list)
    switches: list[Switch] = field(default_factory=list)
    off_now: int = 0
    event_ns: float = 0.0  # the price of an event the estimate uses now
    priced_at_s: float | None = None  # when the measured price came (None: the probe cost still)
    price_error: str | None = None  # why there is no measured price
    prices: int = 0  # how many measured prices event_ns is the median of

    HISTORY = 240

    def add_point(self, t: float, pct: float) -> None:
        self.history.append((round(t, 3), round(pct, 3)))
        if len(self.history) > self.HISTORY:  # keep every other point: the whole run, coarser
            self.history[:] = self.history[::2]


class Dial:
    """The budget's policy.  `tick()` after each drain; it acts once per
    `period_s` (the refresh)."""

    def __init__(self, budget: float, control: Control, period_s: float = 0.1) -> None:
        self.state = DialState(budget)
        self.control = control
        self.period_s = period_s
        self._start = time.monotonic()
        self._last_t: float | None = None
        self._last_cpu: int | None = None
        self._last: dict[int, tuple[int, int, int]] = {}  # fid -> (calls, resumes, total ticks)
        self._off: dict[int, Switch] = {}  # switched off by the dial, off now
        self._baseline: float | None = None  # traced events/s after the last decision
        self._baseline_est = 0.0  # and the estimate then
        self._retry_gap = RETRY_FIRST_S
        self._retry_at = 0.0
        self._retrying: set[int] = set()  # switched on to be judged again
        self._settling = False  # a window with a switch in it is not judged
        self._fast_until: float | None = None  # fast windows until then (set at the first window)
        self._read: set[int] = set()  # OFF commands whose switch has its count
        self.pricing: Pricing | None = None  # the price's measurement under way (start_pricing)
        self._pricing_args: tuple[str, bool, int] | None = None
        self.pricing_started = False
        self._prices: deque[float] = deque(maxlen=PRICES)  # the latest measured prices
        self._reprice_gap = REPRICE_FIRST_S
        self._reprice_at = 0.0
        # the last windows judged together: (events, time shown, CPU ns) per window
        self._recent: deque[tuple[dict[int, int], dict[int, float], float]] = deque(
            maxlen=max(1, round(SMOOTH_S / period_s)))

    def start_pricing(self, engine: str, native_calls: bool, ring_bytes: int) -> None:
        """Measures the price of an event in a child process (once the
        program's agent says which engine it runs), on rings of the run's size;
        again and again (see price)."""
        if not self.pricing_started:
            self.pricing_started = True
            self._pricing_args = (engine, native_calls, ring_bytes)
            self.pricing = Pricing(engine, native_calls, ring_bytes)

    def price(self, probe_ns: float) -> float:
        """The price of an event now: the median of the measured ones (the
        latest PRICES), else the start-up probe cost.  One measurement takes
        a fraction of a second of a busy machine, whose load moves: it is
        made again REPRICE_FIRST_S after the first, then at doubling gaps up
        to REPRICE_MAX_S."""
        pricing = self.pricing
        if pricing is not None and pricing.poll() is not None:
            if pricing.event_ns is not None:
                self._prices.append(pricing.event_ns)
                if self.state.priced_at_s is None:
                    self.state.priced_at_s = round(time.monotonic() - self._start, 3)
            else:
                self.state.price_error = pricing.error
            self.pricing = None
            self._reprice_at = time.monotonic() + self._reprice_gap
            self._reprice_gap = min(2 * self._reprice_gap, REPRICE_MAX_S)
        if (self.pricing is None and self._pricing_args is not None and self._prices
                and time.monotonic() >= self._reprice_at):
            self.pricing = Pricing(*self._pricing_args)
        if self._prices:
            self.state.prices = len(self._prices)
            return statistics.median(self._prices)
        return probe_ns

    def close(self) -> None:
        """Stops a measurement under way."""
        if self.pricing is not None:
            self.pricing.close()
            self.pricing = None
        self._pricing_args = None

    def _period(self, now: float) -> float:
        if self._fast_until is not None and now < self._fast_until:
            return min(FAST_WINDOW_S, self.period_s)
        return self.period_s

    def due(self, now: float) -> bool:
        """Is tick() worth calling now: a window is over, or a switch is
        waiting to take effect (its window starts when it did)."""
        return self._last_t is None or self._settling or now - self._last_t >= self._period(now)

    def budget(self, pct: float) -> None:
        """Turns the dial (the view's `d`): 0 turns it off, switching on
        again what it switched off."""
        self.state.budget = pct
        self._baseline = None
        self._retry_at = 0.0
        self._retry_gap = RETRY_FIRST_S
        if pct <= 0 and self._off:
            self._switch_on(time.monotonic() - self._start)
            self._retrying = set()

    def tick(self, rows: list[tuple[int, ...]], names: dict[int, str], probe_ns: float,
             ns_per_tick: float, now: float | None = None, cpu_ns: int | None = None) -> None:
        """`rows`: the replay's cumulative (id, calls, resumes, self, total);
        `probe_ns`: the start-up probe cost (the price until the measured one comes);
        `cpu_ns`: the program's CPU time so far (all its threads), if known."""
        now = time.monotonic() if now is None else now
        if self._last_t is None:
            self._last_t, self._last_cpu = now, cpu_ns
            self._fast_until = now + FAST_FOR_S
            self._remember(rows)
            return
        if self._settling and self._fast_until is not None and now < self._fast_until:
            # the next window starts once the agent applied the switch
            if not self.control.pending():
                self._settling = False
                self._last_t, self._last_cpu = now, cpu_ns
                self._remember(rows)
            return
        window_s = now - self._last_t
        if window_s < self._period(now):
            return
        # the program's own time in the window: its CPU time where the kernel
        # says (on a busy machine it gets less than the wall window), else wall
        window_ns = window_s * 1e9
        if cpu_ns is not None and self._last_cpu is not None and cpu_ns > self._last_cpu:
            window_ns = float(cpu_ns - self._last_cpu)
        t = now - self._start
        events: dict[int, int] = {}
        shown: dict[int, float] = {}
        cleared = False
        for row in rows:
            fid, calls, resumes, total = row[0], row[1], row[2], row[4]
            c0, r0, t0 = self._last.get(fid, (0, 0, 0))
            if calls < c0 or resumes < r0:
                cleared = True  # the totals were cleared: start over
                break
            n = 2 * ((calls - c0) + (resumes - r0))
            if n:
                events[fid] = n
                shown[fid] = max((total - t0) * ns_per_tick, 1.0)
        self._read_counts(rows, now)
        event_ns = self.state.event_ns = self.price(probe_ns)
        if not cleared and sum(events.values()) * event_ns >= window_ns and window_s < LAG_MAX_S:
            # the events read cost more than the CPU time the program had: they were not all
            # made in this window (the monitor, starved on a busy machine, read a backlog
            # late); judged with the next window, the two together
            return
        self._last_t, self._last_cpu = now, cpu_ns
        self._remember(rows)
        if cleared or event_ns <= 0 or self.state.budget <= 0:
            return
        if self.control.pending() or self._settling:
            # the last commands have not taken effect, or took effect inside this window
            self._settling = bool(self.control.pending())
            self._recent.clear()
            self.state.estimate = _pct(sum(events.values()) * event_ns, window_ns)
            self.state.add_point(t, self.state.estimate)
            return
        # judged over the windows of the last SMOOTH_S: a drain that read late moves events
        # from one window to the next, not out of their sum
        self._recent.append((events, shown, window_ns))
        if len(self._recent) > 1:
            events, shown = {}, {}
            for ev, sh, _ in self._recent:
                for fid, n in ev.items():
                    events[fid] = events.get(fid, 0) + n
                    shown[fid] = shown.get(fid, 0.0) + sh[fid]
            window_ns = sum(w for _, _, w in self._recent)
        est = _pct(sum(events.values()) * event_ns, window_ns)
        self.state.estimate = est
        self.state.add_point(t, est)
        budget = self.state.budget
        rate = sum(events.values()) / (window_ns / 1e9)
        retried, self._retrying = bool(self._retrying), set()
        if est > budget:
            self._switch_off(events, shown, event_ns, window_ns, names, t, retried)
            self._baseline = None
            return
        if retried:  # switched on again and the program can afford it now
            self._retry_gap = RETRY_FIRST_S
        if self._baseline is None:
            self._baseline, self._baseline_est = rate, est
            return
        # a change of shape: the traced rate doubled or halved, by enough to
        # matter (a quarter of the budget): a quiet program's few events jitter
        changed = ((rate > 2 * self._baseline or rate < self._baseline / 2)
                   and abs(est - self._baseline_est) > budget / 4)
        if self._off and est < budget / 2 and changed and t >= self._retry_at:
            self._switch_on(t)

    def _remember(self, rows: list[tuple[int, ...]]) -> None:
        self._last = {row[0]: (row[1], row[2], row[4]) for row in rows}

    def _read_counts(self, rows: list[tuple[int, ...]], now: float) -> None:
        """Fills each switch's count up to it, once its events are all read."""
        calls = {row[0]: row[1] for row in rows}
        for cmd in self.control.done:
            if cmd.done_ns is None or time.monotonic_ns() - cmd.done_ns < SETTLE_NS:
                continue
            for sw in self.state.switches:
                if sw.fid == cmd.fid and sw.calls is None and cmd.off and cmd.seq not in self._read:
                    sw.calls, sw.done_ns = calls.get(sw.fid, 0), cmd.done_ns
                    self._read.add(cmd.seq)
                    break

    def _switch_off(self, events: dict[int, int], shown: dict[int, float], event_ns: float,
                    window_ns: float, names: dict[int, str], t: float, retried: bool) -> None:
        total = sum(events.values())
        cost = total * event_ns
        floor = MIN_SHARE * total
        # most probe cost per time shown first (many short calls)
        order = sorted((fid for fid, n in events.items()
                        if n >= floor and fid in names and fid not in self._off),
                       key=lambda fid: events[fid] * event_ns / shown[fid], reverse=True)
        chosen = []
        for fid in order:
            if _pct(cost, window_ns) <= MARGIN * self.state.budget:
                break
            chosen.append(fid)
            cost -= events[fid] * event_ns
        if not chosen:
            return
        try:
            self.control.switch(chosen, off=True)
        except ChannelFull:  # the agent is behind: what was posted stands, the rest waits
            posted = self.control.functions
            chosen = [fid for fid in chosen if fid in posted and posted[fid].pending]
        for fid in chosen:
            sw = Switch(fid, names[fid], round(t, 3), events[fid] / (window_ns / 1e9))
            self.state.switches.append(sw)
            self._off[fid] = sw
        self.state.off_now = len(self._off)
        self._settling = True
        self._recent.clear()
        if retried:
            self._retry_gap = min(self._retry_gap * 2, RETRY_MAX_S)
        self._retry_at = t + self._retry_gap

    def _switch_on(self, t: float) -> None:
        fids = list(self._off)
        try:
            self.control.switch(fids, off=False)
        except ChannelFull:
            return
        for fid in fids:
            self._off.pop(fid).back_on_s = round(t, 3)
        self._retrying = set(fids)
        self._settling = True
        self._recent.clear()
        self.state.off_now = 0
        self._baseline = None


    def report(self, functions: list[FunctionStats], final: bool) -> DialState:
        """The state for a profile; `final`: the program ended and every event
        was read, so a function still off has its count up to the switch."""
        if final:
            self.close()
            calls = {f.fid: f.calls for f in functions}
            for sw in self.state.switches:
                if sw.back_on_s is None:
                    sw.calls = calls.get(sw.fid, 0)
            for cmd in self.control.done:  # when the last ones took effect
                for sw in self.state.switches:
                    if sw.fid == cmd.fid and sw.done_ns is None and cmd.off and cmd.seq not in self._read:
                        sw.done_ns = cmd.done_ns
                        self._read.add(cmd.seq)
                        break
        return self.state


def _pct(cost_ns: float, window_ns: float) -> float:
    """Probe time as a share of the program's own time in the window."""
    own = window_ns - cost_ns
    if own <= 0:
        return 1000.0
    return 100.0 * cost_ns / own


@dataclass(slots=True)
class BurstState:
    """What the report shows of `--burst ON_MS:PERIOD_MS`: each function's
    own traced share comes from how long it was off (traced_share)."""

    on_ms: int
    period_ms: int


class Burst:
    """`--burst ON_MS:PERIOD_MS`: every function traced for ON_MS out of every
    PERIOD_MS, switched off and on again through the control channel (OFF
    and ON per function, as many as the channel holds at a time).  A burst
    starts with every function on; on sys.monitoring the agent restates the
    stacks then (ULMA_SYNC_RESTATE), on PEP 523 frames end as they began.
    `tick()` after each drain."""

    def __init__(self, on_ms: int, period_ms: int, control: Control) -> None:
        self.state = BurstState(on_ms, period_ms)
        self.control = control
        self._start_ns = time.monotonic_ns()
        self._off: set[int] = set()  # switched off by the burst, off now
        self._todo: list[int] = []  # still to post for this phase
        self._on_phase = True

    def tick(self, names: dict[int, str], now_ns: int | None = None) -> None:
        now = time.monotonic_ns() if now_ns is None else now_ns
        into = (now - self._start_ns) % (self.state.period_ms * 1_000_000)
        on = into < self.state.on_ms * 1_000_000
        if on != self._on_phase:  # a new phase: the other switches
            self._on_phase = on
            if on:
                self._todo = sorted(self._off)
            else:
                self._todo = []
        if not on:  # functions seen since: off too
            self._todo += [fid for fid in names if fid not in self._off and fid not in self._todo]
        room = self.control.room()
        batch, self._todo = self._todo[:room], self._todo[room:]
        if batch:
            self.control.switch(batch, off=not on)
            if on:
                self._off.difference_update(batch)
            else:
                self._off.update(batch)

    def report(self) -> BurstState:
        return self.state


def traced_share(f: FunctionStats, run_ns: int) -> float:
    """The part of the run (`run_ns`, the profile's wall time) when `f` was on
    under --burst: the control channel's acknowledgements say how long it was
    off (FunctionStats.off_ns).  Its calls seen / this estimate its calls."""
    if run_ns <= 0:
        return 1.0
    return min(max(1.0 - f.off_ns / run_ns, 1e-3), 1.0)
