"""Closes every descriptor it did not open (as some daemons do), then opens
a pipe in a thread that ends: the profiler must not close the pipe, which may
now have the number of a descriptor the profiler opened for that thread."""

import os
import threading

pipe: list[int] = []


def worker() -> None:
    sum(i * i for i in range(1000))  # the thread's first events: its CPU reading opens schedstat
    os.closerange(3, 4096)
    pipe.extend(os.pipe())


t = threading.Thread(target=worker)
t.start()
t.join()
r, w = pipe
os.write(w, b"x")
print("pipe ok" if os.read(r, 1) == b"x" else "pipe broken")
