"""Forks once (the child leaves by os._exit), optionally with a thread of its own running.

    fork_warning.py          one thread: Python 3.12+ gives no warning
    fork_warning.py thread   a second thread: Python 3.12+ warns that the process is multi-threaded
"""

import os
import sys
import threading

if __name__ == "__main__":
    stop = threading.Event()
    if sys.argv[1:] == ["thread"]:
        threading.Thread(target=stop.wait).start()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    stop.set()
    print("forked")
