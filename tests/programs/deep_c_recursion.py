"""Deep Python recursion that enters deep C recursion from its deepest frames, and changes the signal mask
down there; prints what it reached and the mask, which must be the same under ulma as under python.

Without ulma a Python-to-Python call takes no C stack, so repr() and json.dumps() of containers nested
almost to CPython's C recursion limit work from any Python depth; RecursionError, where it happens, comes
at the same nesting. The signal mask blocked at the deepest frame stays blocked after the recursion
returns. Both run in the main thread and in a second thread.
"""

import json
import signal
import sys
import threading

DEPTH = 60_000
CHECK_EVERY = 6_000
NESTINGS = (50, 1_000, 2_500, 9_000)


def nested(n: int) -> list[object]:
    x: list[object] = []
    for _ in range(n):
        x = [x]
    return x


BLOBS = {n: nested(n) for n in NESTINGS}


def c_recursion() -> str:
    out = []
    for n, blob in BLOBS.items():
        for name, fn in (("json", json.dumps), ("repr", repr)):
            try:
                out.append(f"{name}{n}={len(fn(blob))}")
            except RecursionError:
                out.append(f"{name}{n}=RecursionError")
    return " ".join(out)


def blocked() -> list[int]:
    return sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, set()))


def down(n: int, seen: list[str], sig: signal.Signals) -> None:
    if n % CHECK_EVERY == 0:
        seen.append(f"depth {n}: {c_recursion()}")
    if n == DEPTH:
        signal.pthread_sigmask(signal.SIG_BLOCK, {sig})
        seen.append(f"depth {n}: blocked {blocked()}")
        return
    down(n + 1, seen, sig)


def run(name: str, sig: signal.Signals) -> None:
    seen: list[str] = []
    down(0, seen, sig)
    print(f"{name}: " + "\n".join(seen))
    print(f"{name}: after return blocked {blocked()}")


def main() -> None:
    sys.setrecursionlimit(DEPTH + 40_000)  # 3.11 counts C recursion against it too
    run("main", signal.SIGUSR1)
    t = threading.Thread(target=run, args=("thread", signal.SIGUSR2))
    t.start()
    t.join()


if __name__ == "__main__":
    main()
