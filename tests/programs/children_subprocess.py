"""Runs a Python script as a subprocess (and `sleep 1`, a program that is not Python), and makes
calls of its own.  `children_subprocess.py`: runs `python children_subprocess.py child N` with
subprocess.run, the child calls `child_leaf` N times; prints the ground truth:

    child_leaf <calls made in the child>
    parent_leaf <calls made in the parent>
    child_pid <pid>
"""

import os
import subprocess
import sys

CHILD_CALLS = 3_000
PARENT_CALLS = 700


def child_leaf(n: int) -> int:
    return n + 1


def parent_leaf(n: int) -> int:
    return n + 1


def main() -> None:
    if sys.argv[1:2] == ["child"]:
        n = 0
        for _ in range(int(sys.argv[2])):
            n = child_leaf(n)
        print(os.getpid())
        return
    done = subprocess.run([sys.executable, __file__, "child", str(CHILD_CALLS)], check=True,
                          capture_output=True, text=True)
    subprocess.run(["sleep", "1"], check=True)  # not Python: listed, unprofiled
    n = 0
    for _ in range(PARENT_CALLS):
        n = parent_leaf(n)
    print(f"child_leaf {CHILD_CALLS}")
    print(f"parent_leaf {n}")
    print(f"child_pid {done.stdout.strip()}")


if __name__ == "__main__":
    main()
