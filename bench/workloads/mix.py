"""A realistic mix: an object-oriented message-passing simulation full of small methods,
float-heavy n-body steps, a json round-trip loop and a regex scan-and-rewrite loop.

Each part is sized to a few tenths of a second unprofiled so no single style dominates.
"""

import json
import math
import random
import re
import sys
import time
from collections import deque
from collections.abc import Callable

# --- part 1: a dispatch simulation (many small methods, properties, inheritance) ---------


class Parcel:
    __slots__ = ("hops", "route", "value", "weight")

    def __init__(self, weight: int, route: int) -> None:
        self.weight = weight
        self.route = route
        self.hops = 0
        self.value = 0

    def stamp(self) -> "Parcel":
        self.hops += 1
        return self

    @property
    def heavy(self) -> bool:
        return self.weight > 60


class Tray:
    """A FIFO in front of each station."""

    def __init__(self) -> None:
        self._items: deque[Parcel] = deque()

    def put(self, parcel: Parcel) -> None:
        self._items.append(parcel)

    def take(self) -> Parcel:
        return self._items.popleft()

    def empty(self) -> bool:
        return not self._items


class Station:
    def __init__(self, name: str, depot: "Depot") -> None:
        self.name = name
        self.depot = depot
        self.tray = Tray()
        self.handled = 0

    @property
    def ready(self) -> bool:
        return not self.tray.empty()

    def forward(self, target: str, parcel: Parcel) -> None:
        self.depot.deliver(target, parcel.stamp())

    def step(self) -> None:
        parcel = self.tray.take()
        self.handled += 1
        self.handle(parcel)

    def handle(self, parcel: Parcel) -> None:
        raise NotImplementedError


class Intake(Station):
    """Creates parcels while it has budget left, then falls silent."""

    def __init__(self, name: str, depot: "Depot", budget: int, seed: int) -> None:
        super().__init__(name, depot)
        self.budget = budget
        self.rng = random.Random(seed)

    @property
    def ready(self) -> bool:
        return self.budget > 0

    def step(self) -> None:
        self.budget -= 1
        parcel = Parcel(self.rng.randrange(1, 100), self.rng.randrange(3))
        self.forward("sorter", parcel)


class Sorter(Station):
    def handle(self, parcel: Parcel) -> None:
        self.forward(self.lane_for(parcel), parcel)

    def lane_for(self, parcel: Parcel) -> str:
        return "crane" if parcel.heavy else f"belt{parcel.route}"


class Belt(Station):
    def __init__(self, name: str, depot: "Depot", speed: int) -> None:
        super().__init__(name, depot)
        self.speed = speed

    def handle(self, parcel: Parcel) -> None:
        parcel.value += self.cost(parcel)
        # Some parcels loop back for a second sort, as misrouted goods do.
        target = "sorter" if parcel.hops < 3 and parcel.weight % 7 == 0 else "ledger"
        self.forward(target, parcel)

    def cost(self, parcel: Parcel) -> int:
        return parcel.weight * self.speed + parcel.hops


class Crane(Belt):
    def cost(self, parcel: Parcel) -> int:
        return super().cost(parcel) * 2 + 5


class Ledger(Station):
    def __init__(self, name: str, depot: "Depot") -> None:
        super().__init__(name, depot)
        self.total = 0

    def handle(self, parcel: Parcel) -> None:
        self.total = (self.total * 31 + parcel.value + parcel.hops) % 1_000_000_007


class Depot:
    def __init__(self) -> None:
        self.stations: dict[str, Station] = {}
        self.steps = 0

    def add(self, station: Station) -> Station:
        self.stations[station.name] = station
        return station

    def deliver(self, target: str, parcel: Parcel) -> None:
        self.stations[target].tray.put(parcel)

    def run(self) -> None:
        busy = True
        while busy:
            busy = False
            for station in self.stations.values():
                if station.ready:
                    station.step()
                    self.steps += 1
                    busy = True


def simulate(parcels: int) -> int:
    depot = Depot()
    depot.add(Intake("intake", depot, parcels, seed=7))
    depot.add(Sorter("sorter", depot))
    for lane in range(3):
        depot.add(Belt(f"belt{lane}", depot, speed=lane + 1))
    depot.add(Crane("crane", depot, speed=4))
    ledger = depot.add(Ledger("ledger", depot))
    depot.run()
    assert isinstance(ledger, Ledger)
    return ledger.total + depot.steps


# --- part 2: n-body (float arithmetic in tight loops, few calls) ------------------------

Body = list[float]  # x, y, z, vx, vy, vz, mass


def make_bodies(count: int, seed: int) -> list[Body]:
    rng = random.Random(seed)
    bodies = [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 40.0]]  # a heavy centre
    for _ in range(count - 1):
        radius = rng.uniform(4.0, 30.0)
        angle = rng.uniform(0.0, 2.0 * math.pi)
        speed = math.sqrt(40.0 / radius)
        bodies.append(
            [
                radius * math.cos(angle),
                radius * math.sin(angle),
                rng.uniform(-0.1, 0.1),
                -speed * math.sin(angle),
                speed * math.cos(angle),
                0.0,
                rng.uniform(0.001, 0.05),
            ]
        )
    return bodies


def advance(bodies: list[Body], dt: float) -> None:
    for i, a in enumerate(bodies):
        for b in bodies[i + 1 :]:
            dx, dy, dz = a[0] - b[0], a[1] - b[1], a[2] - b[2]
            dist2 = dx * dx + dy * dy + dz * dz
            scale = dt / (dist2 * math.sqrt(dist2))
            ma, mb = a[6] * scale, b[6] * scale
            a[3] -= dx * mb
            a[4] -= dy * mb
            a[5] -= dz * mb
            b[3] += dx * ma
            b[4] += dy * ma
            b[5] += dz * ma
    for body in bodies:
        body[0] += dt * body[3]
        body[1] += dt * body[4]
        body[2] += dt * body[5]


def energy(bodies: list[Body]) -> float:
    total = 0.0
    for i, a in enumerate(bodies):
        total += 0.5 * a[6] * (a[3] ** 2 + a[4] ** 2 + a[5] ** 2)
        for b in bodies[i + 1 :]:
            total -= a[6] * b[6] / math.dist(a[:3], b[:3])
    return total


def orbit(steps: int) -> int:
    bodies = make_bodies(6, seed=3)
    for _ in range(steps):
        advance(bodies, 0.001)
    return round(energy(bodies) * 1e6)


# --- part 3: json round trips (C encoder/decoder plus Python default hooks) -------------


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents


def encode_extra(obj: object) -> object:
    if isinstance(obj, Money):
        return {"cents": obj.cents}
    raise TypeError(type(obj).__name__)


def make_orders(count: int) -> list[dict[str, object]]:
    rng = random.Random(11)
    return [
        {
            "id": n,
            "customer": f"customer-{rng.randrange(500)}",
            "lines": [
                {
                    "sku": f"SKU{rng.randrange(10_000):05d}",
                    "qty": rng.randrange(1, 9),
                    "price": Money(rng.randrange(100, 90_000)),
                }
                for _ in range(rng.randrange(1, 6))
            ],
            "tags": rng.sample(["gift", "express", "fragile", "bulk", "return"], 2),
            "score": rng.random(),
        }
        for n in range(count)
    ]


def json_round_trips(rounds: int) -> int:
    orders = make_orders(150)
    size = 0
    for _ in range(rounds):
        text = json.dumps(orders, default=encode_extra, sort_keys=True)
        back = json.loads(text)
        size += len(text) + len(back)
    return size


# --- part 4: regex scanning and rewriting -----------------------------------------------

LINE_RE = re.compile(
    r"(?P<date>\d{4}-\d\d-\d\d) (?P<time>\d\d:\d\d:\d\d) \[(?P<level>[A-Z]+)\] "
    r"user=(?P<user>\w+) took=(?P<ms>\d+\.\d+)ms path=(?P<path>\S+)"
)
USER_RE = re.compile(r"user=(\w+)")
DIGITS_RE = re.compile(r"\d{3,}")


def make_log(lines: int) -> str:
    rng = random.Random(5)
    users = ["ada", "brian", "chen", "dolores", "emeka", "fatima", "goran"]
    levels = ["INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG"]
    out = []
    for n in range(lines):
        out.append(
            f"2024-03-{1 + n % 28:02d} {n % 24:02d}:{n % 60:02d}:{(n * 7) % 60:02d} "
            f"[{rng.choice(levels)}] user={rng.choice(users)} took={rng.uniform(0, 900):.2f}ms "
            f"path=/api/v{rng.randrange(1, 4)}/items/{rng.randrange(100_000)}"
        )
    return "\n".join(out)


def mask_user(match: re.Match[str]) -> str:
    return "user=" + "*" * len(match.group(1))


def scan_log(rounds: int) -> int:
    log = make_log(2_000)
    checksum = 0
    for _ in range(rounds):
        slow = 0
        for match in LINE_RE.finditer(log):
            if match["level"] != "DEBUG" and float(match["ms"]) > 450.0:
                slow += 1
        masked = USER_RE.sub(mask_user, log)
        masked = DIGITS_RE.sub("#", masked)
        checksum += slow + len(masked)
    return checksum


# ----------------------------------------------------------------------------------------

PARTS: list[tuple[str, Callable[[int], int], int]] = [
    ("simulate", simulate, 45_000),
    ("orbit", orbit, 18_000),
    ("json", json_round_trips, 90),
    ("regex", scan_log, 20),
]


def main() -> None:
    start = time.perf_counter()
    cpu0 = time.thread_time()
    results = [part(size) for _, part, size in PARTS]
    elapsed = time.perf_counter() - start
    print(f"BENCH_CHECK={','.join(map(str, results))}", file=sys.stderr)
    print(f"BENCH_CPU_SECONDS={time.thread_time() - cpu0:.6f}", file=sys.stderr)
    print(f"BENCH_SECONDS={elapsed:.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
