"""The table fitted to a width: what gives way first, and header/footer lines wrapped between items."""

from __future__ import annotations

from rich.text import Text

from ulma.views.layout import BAR_MAX, BAR_MIN, Number, fit, pack
from ulma.views.live_rows import COLUMNS, fit_columns

NUMBERS = [Number("calls", 10), Number("rate", 10, drop=1), Number("self", 10), Number("total", 11),
           Number("per_call", 10, drop=2), Number("share", 6)]


def labels(indexes: list[int]) -> list[str]:
    return [COLUMNS[i].key for i in indexes]


def test_wide_every_column_shows_with_a_full_bar_and_the_name_takes_the_rest() -> None:
    f = fit(197, NUMBERS)
    assert f.shown == ("calls", "rate", "self", "total", "per_call", "share")
    assert f.bar_width == BAR_MAX
    assert f.name_width + f.bar_width + sum(n.width + 1 for n in NUMBERS) + 2 == 197


def test_at_80_columns_calls_per_second_and_per_call_drop_and_the_bar_and_percent_stay() -> None:
    shown, name, bar = fit_columns(80 - 3)
    assert labels(shown) == ["function", "calls", "self", "total", "share"]
    assert bar >= BAR_MIN and name >= 24
    # the whole line fits: a margin, each column and the gap after it
    assert 1 + name + 1 + sum(COLUMNS[i].width + 1 for i in shown[1:]) + bar + 1 <= 80 - 2


def test_calls_per_second_drops_before_per_call() -> None:
    widths = {w: labels(fit_columns(w)[0]) for w in range(60, 200)}
    with_rate = [w for w, shown in widths.items() if "rate" in shown]
    with_per_call = [w for w, shown in widths.items() if "per_call" in shown]
    assert min(with_rate) > min(with_per_call)
    assert all("share" in shown for shown in widths.values())


def test_the_name_shrinks_to_its_preferred_width_before_any_column_drops() -> None:
    at_120 = fit_columns(120 - 3)
    assert labels(at_120[0]) == [c.key for c in COLUMNS]
    assert at_120[1] >= 32 and at_120[2] == BAR_MAX


def test_pack_breaks_only_between_items_and_never_passes_the_width() -> None:
    items = [Text(word) for word in ("pid 123", "running 5.5 s", "thread all", "clock wall", "sort self ▼")]
    packed = pack(items, 30).plain.split("\n")
    assert packed == ["pid 123  running 5.5 s", "thread all  clock wall", "sort self ▼"]
    assert pack(items, 200).plain.count("\n") == 0
    assert pack([Text("x" * 50)], 10).plain == "x" * 9 + "…"
