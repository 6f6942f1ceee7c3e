"""Recursion until RecursionError (or to a given depth), reporting the absolute frame depth reached.

Usage: recursion_limit.py LIMIT TARGET
  LIMIT   "default" or a number for sys.setrecursionlimit
  TARGET  "error" to recurse until RecursionError, or a depth to reach and return from

Prints the depth in Python frames counted from the program's own <module> frame (which is the bottom
frame under plain `python prog.py`), so frames a launcher keeps below the program are not counted: the
number is how deep the program itself got.
"""

import sys

deepest = 0


def program_depth() -> int:
    """Frames from the caller down to this program's <module> frame, both included."""
    frame = sys._getframe(1)
    depth = 1
    while not (frame.f_code.co_name == "<module>" and frame.f_globals is globals()):
        assert frame.f_back is not None, "the program's <module> frame is not on the stack"
        frame = frame.f_back
        depth += 1
    return depth


def down(n: int, target: int) -> int:
    global deepest
    deepest = n
    if n == target:
        return n
    return down(n + 1, target)


def main() -> None:
    limit, target = sys.argv[1], sys.argv[2]
    if limit != "default":
        sys.setrecursionlimit(int(limit))
    base = program_depth()  # frames below down(1): main and <module>
    if target == "error":
        try:
            down(1, -1)
        except RecursionError:
            print(f"RecursionError at depth {base + deepest}")
    else:
        print(f"reached {down(1, int(target))}")


if __name__ == "__main__":
    main()
