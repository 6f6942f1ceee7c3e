"""What a tool that hooks objects can break, each printed: an OrderedDict (a C subtype whose
dealloc calls its base's) dropped; a list nested 300 000 deep dropped (CPython's trashcan keeps
that from recursing in C); an instance's __class__ reassigned between two classes of the
program's (CPython compares their tp_free)."""

from collections import OrderedDict


class A:
    pass


class B:
    pass


def main() -> None:
    d = OrderedDict(a=1, b=2)
    del d
    print("odict dropped")
    nested: list[object] = []
    for _ in range(300_000):
        nested = [nested]
    del nested
    print("deep list dropped")
    a = A()
    try:
        a.__class__ = B  # type: ignore[assignment]
        print("class reassigned:", type(a).__name__)
    except TypeError as exc:
        print("class not reassigned:", exc)


if __name__ == "__main__":
    main()
