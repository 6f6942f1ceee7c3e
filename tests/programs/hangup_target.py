"""For the hang-up tests: PIDFILE SECONDS [--ignore-hup].

Prints a line on stdout and one on stderr, writes its pid to PIDFILE, then calls work() for SECONDS
seconds and prints "finished".  With --ignore-hup it ignores SIGHUP first, as a server that reloads
on it might: closing its terminal does not end it."""

import os
import signal
import sys
import time


def work() -> int:
    return sum(i * i for i in range(2000))


def main() -> None:
    pid_file, seconds = sys.argv[1], float(sys.argv[2])
    if "--ignore-hup" in sys.argv[3:]:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    print(f"hangup_target {os.getpid()} on stdout", flush=True)
    print(f"hangup_target {os.getpid()} on stderr", file=sys.stderr, flush=True)
    with open(pid_file + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(pid_file + ".tmp", pid_file)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        work()
        time.sleep(0.005)
    print("finished", flush=True)


if __name__ == "__main__":
    main()
