"""`stream_phases.py GO PHASES N`: waits for one byte on the FIFO GO before each of PHASES phases
and before it ends (a test sends it once it has seen the last phase in ulma's live streams); a
phase calls phase_mark(k) once and work() N times.  At the end it prints what it counted itself:
`work=W phase_mark=P`."""

import os
import sys

calls = 0


def work(i: int) -> int:
    global calls
    calls += 1
    return i + 1


def phase_mark(k: int) -> int:
    return k


def main() -> None:
    go, phases, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    fd = os.open(go, os.O_RDONLY)
    marks = 0
    for k in range(phases + 1):
        if os.read(fd, 1) != b"g":
            sys.exit("stream_phases: the test went away")
        if k == phases:
            break
        phase_mark(k)
        marks += 1
        for i in range(n):
            work(i)
    print(f"work={calls} phase_mark={marks}", flush=True)


if __name__ == "__main__":
    main()
