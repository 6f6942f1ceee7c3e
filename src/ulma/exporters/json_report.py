"""The JSON report (``ulma run --json FILE``).

Contract, version 1 -- later versions add fields, never rename these:
``{"version", "python", "wall_ns", "events", "dropped", "threads",
"functions": [{"name", "file", "line", "calls", "resumes", "self_ns", "total_ns"}],
"edges": [{"caller", "callee", "calls", "total_ns"}]}`` (edge ends index functions).
"""

from __future__ import annotations

import json
from typing import Any

from ulma.monitor.profile import Profile

VERSION = 1


def to_dict(profile: Profile) -> dict[str, Any]:
    return {
        "version": VERSION,
        "python": profile.python,
        "wall_ns": profile.wall_ns,
        "events": profile.events,
        "dropped": profile.dropped,
        "threads": len(profile.threads),
        "lost_ns": profile.lost_ns,
        "engine": profile.engine,
        "clock": profile.clock,
        "functions": [
            {"name": f.name, "file": f.file, "line": f.line, "calls": f.calls,
             "resumes": f.resumes, "self_ns": f.self_ns, "total_ns": f.total_ns}
            for f in profile.functions
        ],
        "edges": [
            {"caller": e.caller, "callee": e.callee, "calls": e.calls, "resumes": e.resumes,
             "total_ns": e.total_ns}
            for e in profile.edges
        ],
    }


def write(profile: Profile, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(to_dict(profile), f, indent=1)
        f.write("\n")
