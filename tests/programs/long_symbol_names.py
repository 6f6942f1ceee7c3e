"""Defines and calls COUNT functions with 2000-character names: more
names than ulma's 16 MiB symbol table holds."""

import sys

COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
PAD = "x" * 1990

called = 0
for i in range(COUNT):
    namespace: dict[str, object] = {}
    exec(f"def f_{i:06d}_{PAD}():\n    return 1\n", namespace)
    for value in namespace.values():
        if callable(value):
            called += value()
print(f"called {called} functions")
