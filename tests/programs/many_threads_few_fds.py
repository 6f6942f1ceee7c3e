"""At a limit of 1024 open files, starts 300 threads that stay alive (each
calls `worker` first), then opens 900 files: plain python can, so the
program must be able to under a profiler too."""

import os
import resource
import threading

resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
THREADS, FILES = 300, 900
calls = 0
lock = threading.Lock()


def worker() -> None:
    global calls
    with lock:
        calls += 1


def body(started: threading.Barrier, finish: threading.Event) -> None:
    worker()
    started.wait()
    finish.wait()


def main() -> None:
    started = threading.Barrier(THREADS + 1)
    finish = threading.Event()
    threading.stack_size(256 * 1024)
    threads = [threading.Thread(target=body, args=(started, finish)) for _ in range(THREADS)]
    for t in threads:
        t.start()
    started.wait()
    files = []
    try:
        for _ in range(FILES):
            files.append(open(os.devnull, "rb"))  # noqa: SIM115 (kept open on purpose)
        print(f"opened {len(files)} files with {threading.active_count() - 1} threads alive")
    except OSError as exc:
        print(f"failed after {len(files)} files: {exc.strerror}")
        raise SystemExit(1) from None
    finally:
        for f in files:
            f.close()
        finish.set()
        for t in threads:
            t.join()
    print(f"worker ran {calls} times")


if __name__ == "__main__":
    main()
