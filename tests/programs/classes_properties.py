"""Classes: properties, class and static methods, dunder methods called from C, inheritance, descriptors."""

import functools
from typing import Any, ClassVar


class Positive:
    def __set_name__(self, owner: type, name: str) -> None:
        self.name = "_" + name

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return getattr(obj, self.name)

    def __set__(self, obj: Any, value: int) -> None:
        if value < 0:
            raise ValueError(value)
        setattr(obj, self.name, value)


class Base:
    kinds: ClassVar[list[str]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Base.kinds.append(cls.__name__)

    def describe(self) -> str:
        return "base"


@functools.total_ordering
class Point(Base):
    weight = Positive()

    def __init__(self, x: int, y: int, weight: int = 1) -> None:
        self.x = x
        self.y = y
        self.weight = weight
        self._label = ""

    @property
    def norm(self) -> int:
        return self.x * self.x + self.y * self.y

    @property
    def label(self) -> str:
        return self._label or f"({self.x}, {self.y})"

    @label.setter
    def label(self, value: str) -> None:
        self._label = value

    @label.deleter
    def label(self) -> None:
        self._label = ""

    @classmethod
    def origin(cls) -> "Point":
        return cls(0, 0)

    @staticmethod
    def distance(a: "Point", b: "Point") -> int:
        return abs(a.x - b.x) + abs(a.y - b.y)

    def describe(self) -> str:
        return super().describe() + " point " + self.label

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __lt__(self, other: "Point") -> bool:
        return self.norm < other.norm

    def __hash__(self) -> int:
        return hash((self.x, self.y))

    def __repr__(self) -> str:
        return f"Point({self.x}, {self.y})"


class Pair:
    """Instantiated many times from one call site with exact arguments (3.13 specializes such calls)."""

    def __init__(self, a: int, b: int) -> None:
        self.a = a
        self.b = b


class Proxy:
    """Forwards every attribute read; attribute reads in a loop (3.12+ specializes such reads)."""

    def __init__(self, target: object) -> None:
        object.__setattr__(self, "_target", target)

    def __getattribute__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_target"), name)


class Grid:
    def __init__(self, size: int) -> None:
        self.points = [Point(i % 4, i // 4) for i in range(size)]

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> Point:
        return self.points[index]

    def __iter__(self) -> "GridIterator":
        return GridIterator(self)

    def __getattr__(self, name: str) -> str:
        return f"missing {name}"

    def __call__(self, index: int) -> Point:
        return self[index]


class GridIterator:
    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.index = 0

    def __iter__(self) -> "GridIterator":
        return self

    def __next__(self) -> Point:
        if self.index >= len(self.grid):
            raise StopIteration
        point = self.grid[self.index]
        self.index += 1
        return point


def main() -> None:
    grid = Grid(12)
    points = sorted(grid, reverse=True)
    print(points[:3], len(grid), grid(5), grid.unknown)
    print(len(set([*points, Point.origin()])))
    p = grid[7]
    p.label = "seven"
    print(p.describe(), p.norm, Point.distance(p, Point.origin()))
    del p.label
    print(p.label, p == Point(3, 1), p != Point(0, 0), p >= Point(1, 1))
    try:
        p.weight = -1
    except ValueError:
        print("rejected", p.weight)
    print(Base.kinds)
    pairs = [Pair(i, 2 * i) for i in range(20)]
    print(sum(pair.a + pair.b for pair in pairs))
    proxy = Proxy(pairs[3])
    print(sum(proxy.a for _ in range(20)))


if __name__ == "__main__":
    main()
