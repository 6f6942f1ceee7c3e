"""Two threads each run a subinterpreter (on 3.12+ with a GIL of its own) that makes and drops
200 000 objects of its own class, while the main interpreter makes N Things and keeps none.  Prints
N on its last line."""

from __future__ import annotations

import importlib
import sys
import threading
from typing import Any

try:
    interpreters: Any = importlib.import_module("_interpreters")  # 3.13
except ImportError:
    interpreters = importlib.import_module("_xxsubinterpreters")  # 3.11, 3.12

N = 200_000
SUB = "class T: pass\nfor _ in range(200):\n    objects = [T() for _ in range(1000)]\n"


class Thing:
    pass


def sub() -> None:
    iid = interpreters.create()
    interpreters.run_string(iid, SUB)
    interpreters.destroy(iid)


def make() -> int:
    kept = []
    for i in range(N):
        t = Thing()
        if i % 1000 == 0:
            kept.append(t)
    return len(kept) * 1000


def main() -> None:
    threads = [threading.Thread(target=sub) for _ in range(2)]
    for t in threads:
        t.start()
    made = make()
    for t in threads:
        t.join()
    print(made, file=sys.stdout)


if __name__ == "__main__":
    main()
