"""Objects the program knows it made: each maker makes N objects of its type and keeps K of them
(lists, dicts, strings, instances of a class of its own); `across` makes N Things in a thread of its
own and hands them to the main thread, which drops them all in `drop_all`.  Prints what it did as
JSON on its last line.

    python objects_made.py N K
"""

from __future__ import annotations

import json
import sys
import threading


class Thing:
    pass


kept: list[object] = []


def make_lists(n: int, keep: int) -> None:
    for i in range(n):
        x = [i]
        if i < keep:
            kept.append(x)


def make_dicts(n: int, keep: int) -> None:
    for i in range(n):
        x = {"k": i}
        if i < keep:
            kept.append(x)


def make_strs(n: int, keep: int) -> None:
    for i in range(n):
        x = chr(0x4E00 + i)  # a new str each (chr caches only latin-1)
        if i < keep:
            kept.append(x)


def make_things(n: int, keep: int) -> None:
    for i in range(n):
        x = Thing()
        if i < keep:
            kept.append(x)


class AcrossThing:
    pass


def across(n: int, out: list[AcrossThing]) -> None:
    for _ in range(n):
        out.append(AcrossThing())


def drop_all(box: list[AcrossThing]) -> None:
    box.clear()


def main() -> None:
    n, keep = int(sys.argv[1]), int(sys.argv[2])
    make_lists(n, keep)
    make_dicts(n, keep)
    make_strs(n, keep)
    make_things(n, keep)
    box: list[AcrossThing] = []
    t = threading.Thread(target=across, args=(n, box))
    t.start()
    t.join()
    drop_all(box)
    print(json.dumps({"n": n, "keep": keep, "kept": len(kept)}))


if __name__ == "__main__":
    main()
