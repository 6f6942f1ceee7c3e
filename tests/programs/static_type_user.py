"""Imports tests/programs/static_type.c's module (built into the folder named by its first
argument) after ulma began, waits a little, then makes N Widgets in `make_widgets` and keeps K.
Prints "widgets N K"."""

from __future__ import annotations

import importlib
import sys
import time

N, K = 1000, 100
kept: list[object] = []


def make_widgets(widget: type) -> None:
    for i in range(N):
        w = widget()
        if i < K:
            kept.append(w)


def main() -> None:
    sys.path.insert(0, sys.argv[1])
    static_type = importlib.import_module("static_type")
    time.sleep(0.3)
    make_widgets(static_type.Widget)
    print("widgets", N, len(kept))


if __name__ == "__main__":
    main()
