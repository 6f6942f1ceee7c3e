"""``ulma history ... --html FILE``: the answer as a page that draws it (static/history.html and
history.js, d3 inlined: it opens offline) -- a trend as the four-way split stacked per step, top
and compare as a bar per function, types as objects live per type; every answer as a table too."""

from __future__ import annotations

from typing import Any

from ulma.web import model, page

# the split's parts as the history's columns name them (model.parts' order and colours)
PART_KEYS = {"CPU": "cpu_ns", "overhead": "overhead_ns", "waiting": "wait_ns", "unmeasured": "unmeasured_ns"}


def render(what: str, title: str, answer: dict[str, Any]) -> str:
    if what == "types":
        parts = [{"name": "objects live", "key": "live", "color": model.COLOURS["blue"]}]
    else:
        parts = [{"name": p["name"], "key": PART_KEYS[p["name"]], "color": p["color"]}
                 for p in model.parts(True)]
    data = {"what": what, "title": title, "parts": parts, "answer": answer,
            "unit": "count" if what == "types" else "ns"}
    return page.render(data, template="history.html", script="history.js")
