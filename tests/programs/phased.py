"""Python code marking its phases with ulma.phases (native scopes from Python):
`python phased.py N`.  load() runs N times inside the phase "loading", each call inside a nested
"parsing" phase; prints its own counts as JSON."""

import json
import sys

from ulma.phases import site

LOADING = site("loading")
PARSING = site("parsing")
N = int(sys.argv[1])
parsed = 0


def parse(i: int) -> int:
    global parsed
    parsed += 1
    return i * 2


def load() -> int:
    total = 0
    with LOADING:
        for i in range(N):
            with PARSING:
                total += parse(i)
    return total


def main() -> None:
    load()
    print(json.dumps({"parsed": parsed}), flush=True)


main()
