"""Recursion until RecursionError (or to a given depth), reporting the absolute frame depth reached.

Usage: recursion_limit.py LIMIT TARGET
  LIMIT   "default" or a number for sys.setrecursionlimit
  TARGET  "error" to recurse until RecursionError, or a depth to reach and return from

Prints the depth counted in Python frames from the bottom of the stack (the launcher's frames
included), so a launcher that adds frames below the program does not shift the number.
"""

import sys

deepest = 0


def stack_depth() -> int:
    frame = sys._getframe(1)
    depth = 0
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
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
    base = stack_depth()  # frames below down(1): main, <module>, and whatever launched the program
    if target == "error":
        try:
            down(1, -1)
        except RecursionError:
            print(f"RecursionError at depth {base + deepest}")
    else:
        print(f"reached {down(1, int(target))}")


if __name__ == "__main__":
    main()
