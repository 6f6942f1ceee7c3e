"""Decorators: wrappers with functools.wraps, decorator factories, stacking, class decorators, lru_cache."""

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
calls: dict[str, int] = {}
registry: list[str] = []


def counted(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[fn.__name__] = calls.get(fn.__name__, 0) + 1
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def repeat(times: int) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def repeated(*args: Any, **kwargs: Any) -> Any:
            result = None
            for _ in range(times):
                result = fn(*args, **kwargs)
            return result

        return repeated  # type: ignore[return-value]

    return decorate


def register(cls: type) -> type:
    registry.append(cls.__name__)
    return cls


@counted
def add(a: int, b: int) -> int:
    return a + b


@repeat(3)
@counted
def greet(name: str) -> str:
    return f"hello {name}"


@functools.cache
def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


@register
class Service:
    @counted
    def handle(self, value: int) -> int:
        return value * 2

    @staticmethod
    @counted
    def version() -> str:
        return "1.0"


def main() -> None:
    print(sum(add(i, i) for i in range(20)))
    print(greet("ulma"))
    print(fib(60), fib(30))
    service = Service()
    print([service.handle(i) for i in range(5)], Service.version())
    print(sorted(calls.items()), registry)


if __name__ == "__main__":
    main()
