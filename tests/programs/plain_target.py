"""A plain python program (no agent) that tests attach to: `python plain_target.py DIR MODE`.

MODE: `sleep` (the main thread sleeps 20 ms at a time), `busy` (the main thread calls tick() without
pause) or `threads` (four threads call tick() without pause; the main thread sleeps 20 ms at a time).
The test drives it with files in DIR: it writes `ready` once running; for each file `go-N` holding a
number K, it calls marked() K times in the main thread (`threads`: K times in each thread), then writes
`done-N`; for each file `mark-N` it writes its tick count so far (every thread's) to `ticks-N`; on
`stop` it prints, per phase, how many times it called marked() (its own count: the ground truth),
writes its tick count to `ticks` and exits with 3.  The files are looked at between two ticks of the
main thread.  `--wake-on-usr1` (mode sleep): the main thread first sleeps an hour in one C call,
until SIGUSR1 wakes it; at the end it prints whether `socket` and `ulma` were imported.
`--hold-gil S` (mode busy): the main thread keeps the GIL for S seconds at a time (its switch
interval, and how often it looks at the files), as a program in long computations does.
"""

import contextlib
import os
import signal
import sys
import threading
import time

THREADS = 4
ticks = [0] * (THREADS + 1)
stopping = threading.Event()


def tick(n: int) -> int:
    return n + 1


def spin() -> None:
    """Busy without a call, some microseconds: with tick() about 0.5 M events a second on 3.11 (0.2
    M on 3.12), a busy program's rate, where a bare tick() loop makes several millions."""
    x = 0
    while x < 150:
        x += 1


def marked(n: int) -> int:
    return n + 1


def calls(k: int) -> int:
    count = 0
    for _ in range(k):
        count = marked(count)
    return count


def worker(index: int, orders: "list[int]", done: threading.Semaphore, lock: threading.Lock,
           results: "list[int]") -> None:
    while not stopping.is_set():
        for _ in range(100):
            ticks[index] = tick(ticks[index])
            spin()
        with lock:
            k = orders[index]
            orders[index] = 0
        if k:
            results[index] += calls(k)
            done.release()


class Wake(Exception):
    pass


def on_usr1(signum: int, frame: object) -> None:
    raise Wake


def main() -> None:
    control, mode = sys.argv[1], sys.argv[2]
    wake = "--wake-on-usr1" in sys.argv[3:]
    look_every = 0.0
    if "--hold-gil" in sys.argv[3:]:
        look_every = float(sys.argv[sys.argv.index("--hold-gil") + 1])
        sys.setswitchinterval(look_every)

    def path(name: str) -> str:
        return os.path.join(control, name)

    phases: list[tuple[int, int]] = []
    orders = [0] * (THREADS + 1)
    results = [0] * (THREADS + 1)
    done = threading.Semaphore(0)
    lock = threading.Lock()
    threads = []
    if mode == "threads":
        threads = [threading.Thread(target=worker, args=(i, orders, done, lock, results))
                   for i in range(1, THREADS + 1)]
        for t in threads:
            t.start()
    if wake:
        signal.signal(signal.SIGUSR1, on_usr1)
        open(path("ready"), "w").close()
        with contextlib.suppress(Wake):
            time.sleep(3600)
        open(path("woke"), "w").close()
    else:
        open(path("ready"), "w").close()
    phase = 1
    mark = 1
    polls = 0
    next_look = 0.0
    while True:
        if mode == "busy":
            for _ in range(100):
                ticks[0] = tick(ticks[0])
                spin()
            if look_every:  # (perf_counter keeps the GIL, as the ticking does)
                if time.perf_counter() < next_look:
                    continue
                next_look = time.perf_counter() + look_every
            else:
                polls += 1
                if polls % 20:
                    continue  # the files are looked at every 2,000 ticks
        else:
            time.sleep(0.02)
        if os.path.exists(path("stop")):
            break
        if os.path.exists(path(f"mark-{mark}")):
            # the ticks so far, read between two ticks of the main thread
            with open(path("ticks.tmp"), "w") as f:
                f.write(str(sum(ticks)))
            os.rename(path("ticks.tmp"), path(f"ticks-{mark}"))
            mark += 1
        if not os.path.exists(path(f"go-{phase}")):
            continue
        with open(path(f"go-{phase}")) as f:
            k = int(f.read())
        if mode == "threads":
            with lock:
                for i in range(1, THREADS + 1):
                    orders[i] = k
            for _ in threads:
                done.acquire()
            count = sum(results)
            results[:] = [0] * len(results)
        else:
            count = calls(k)
        phases.append((phase, count))
        open(path(f"done-{phase}"), "w").close()
        phase += 1
    stopping.set()
    for t in threads:
        t.join()
    for n, count in phases:
        print(f"phase {n}: marked={count}")
    if wake:
        print(f"socket imported: {'socket' in sys.modules}; ulma imported: {'ulma' in sys.modules}")
    with open(path("ticks"), "w") as f:
        f.write(str(sum(ticks)))
    sys.exit(3)


if __name__ == "__main__":
    main()
