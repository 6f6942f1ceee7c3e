"""Record classes without :mod:`dataclasses`.

``ulma run`` imports the profile and session types on its way to starting the
program; ``import dataclasses`` pulls in inspect (ast, dis, tokenize...) and
each decorated class compiles its methods at import: about 10 ms of start-up.
These bases give what the decorator gave those classes -- equality and a repr
over the fields, in ``__slots__`` order, and for frozen ones a hash and no
assignment after ``__init__`` -- each class writing its own typed ``__init__``.
"""

from __future__ import annotations


class _Fields:
    """Equality and repr over the fields named in ``__slots__``."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Fields) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{self.__class__.__qualname__}({fields})"


class Plain(_Fields):
    """Mutable: equality, no hash (as ``@dataclass`` leaves it)."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]


class Frozen(_Fields):
    """Plain, hashable, and its fields cannot be assigned after ``__init__``
    (which sets them with ``object.__setattr__``)."""

    __slots__ = ()

    def __hash__(self) -> int:
        return hash(self._values())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: {self.__class__.__name__} is frozen")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: {self.__class__.__name__} is frozen")
