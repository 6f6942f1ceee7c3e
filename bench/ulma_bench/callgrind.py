"""Instructions counted by callgrind inside the loop a benchmark child runs through `map`.

The child (`argv`, a Python command) runs its measured loop as `sum(map(...))`, so
`--toggle-collect=map_next` counts that loop and nothing of start-up or set-up (see
bench/per_event.py).  Exact, unlike wall time on a busy machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile


def callgrind_loop(argv: list[str], what: str) -> tuple[int, str]:
    """(instructions in the child's map loop, the child's stdout); a valgrind failure or a
    missing summary ends the benchmark with one line naming `what`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--toggle-collect=map_next",
               *argv]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{what}: valgrind failed:\n{done.stderr[-2000:]}")
        with open(out) as f:
            found = re.search(r"^summary:\s+(\d+)", f.read(), re.M)
        if not found:
            raise SystemExit(f"{what}: no summary in callgrind's output")
        return int(found.group(1)), done.stdout
