"""The page itself: one HTML file with d3, the page's style and script inlined, so
it needs no network -- served as is by the live server (which sends its data
over the websocket) or written by the HTML report with its data embedded."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

_PLACEHOLDER = re.compile(r"/\*(CSS|D3|DATA|JS)\*/")


def _static(name: str) -> str:
    return (resources.files("ulma.web") / "static" / name).read_text(encoding="utf-8")


def embed_json(data: Any) -> str:
    """JSON safe inside a <script> element: no '<' at all (so no '</script>' or '<!--'),
    and none of the line separators some parsers stop at."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render(data: Any = None, *, template: str = "page.html", script: str = "ulma.js") -> str:
    """The page; `data` (the model, see ulma.web.model) embedded, or None: the page connects
    to the websocket of the server that served it.  `template` and `script`: another page of
    static/ (the history's)."""
    parts = {
        "CSS": _static("ulma.css"),
        "D3": _static("d3.min.js"),
        "DATA": "null" if data is None else embed_json(data),
        "JS": _static(script),
    }
    for name in ("CSS", "D3", "JS"):
        if "</" in parts[name]:
            raise ValueError(f"static/{name.lower()} holds '</': it would end its element early")
    # one pass over the template: a placeholder's look-alike inside inlined text is left alone
    return _PLACEHOLDER.sub(lambda m: parts[m.group(1)], _static(template))
