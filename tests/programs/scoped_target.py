"""A plain python program (no ulma) whose C extension uses ulma's header, for `ulma attach`:
`python scoped_target.py EXT_DIR DIR K`.  Its first scopes run before ulma is in the process (the
extension's hook finds no runtime then).  It writes DIR/ready; on DIR/go it calls
scoped_ext.nested(K, None) (one outer scope, K inner ones) and writes DIR/done; on DIR/stop it
exits.  Between files it sleeps 10 ms at a time."""

import os
import sys
import time

sys.path.insert(0, sys.argv[1])

import scoped_ext  # type: ignore[import-not-found]

where, k = sys.argv[2], int(sys.argv[3])


def wait(name: str) -> None:
    while not os.path.exists(os.path.join(where, name)):
        time.sleep(0.01)


def phase() -> None:
    scoped_ext.nested(k, None)


scoped_ext.nested(3, None)  # before ulma: nothing is recorded, the hook is cleared
open(os.path.join(where, "ready"), "w").close()
wait("go")
phase()
open(os.path.join(where, "done"), "w").close()
wait("stop")
print("ulma loaded" if "ulma" in sys.modules else "no ulma", flush=True)
