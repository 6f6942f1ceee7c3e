"""Context managers: class-based, generator-based, suppressing, nested, ExitStack callbacks."""

import contextlib
from collections.abc import Iterator
from types import TracebackType

events: list[str] = []


class Resource:
    def __init__(self, name: str, suppress: bool = False) -> None:
        self.name = name
        self.suppress = suppress

    def __enter__(self) -> "Resource":
        events.append(f"enter {self.name}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        events.append(f"exit {self.name} {exc_type.__name__ if exc_type else None}")
        return self.suppress

    def use(self) -> str:
        return self.name.upper()


@contextlib.contextmanager
def managed(name: str) -> Iterator[str]:
    events.append(f"open {name}")
    try:
        yield name
    except KeyError:
        events.append(f"handled {name}")
    finally:
        events.append(f"close {name}")


def fail() -> None:
    raise KeyError("missing")


def release(name: str) -> None:
    events.append(f"release {name}")


def main() -> None:
    for i in range(3):
        with Resource(f"r{i}") as resource:
            resource.use()
    with Resource("outer"), Resource("inner", suppress=True):
        fail()
    for name in ("a", "b"):
        with managed(name) as value:
            events.append(value)
    with managed("c"):
        fail()
    with contextlib.ExitStack() as stack:
        for name in ("x", "y", "z"):
            stack.callback(release, name)
        stack.enter_context(Resource("stacked"))
    with contextlib.suppress(KeyError):
        fail()
    print("\n".join(events))


if __name__ == "__main__":
    main()
