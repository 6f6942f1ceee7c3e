"""Python reads the record format from the C header's own numbers."""

from __future__ import annotations

import re
from pathlib import Path

from ulma import _core
from ulma.format import records

HEADER = Path(__file__).resolve().parents[2] / "src" / "ulma" / "_core" / "records.h"


def header_numbers() -> dict[str, int]:
    """Every ULMA_ constant records.h defines, by name without the prefix: enum members and
    #defines (decimal or hex, with or without a u/ULL suffix), and the sizes its static_asserts
    fix (event records, symbol entries)."""
    text = HEADER.read_text()
    found = {name: int(value, 0) for name, value in re.findall(r"\bULMA_([A-Z0-9_]+) = (\d+)\b", text)}
    for name, value in re.findall(r"#define ULMA_([A-Z0-9_]+) (0x[0-9a-fA-F]+|\d+)(?:u|ULL)?\b", text):
        found[name] = int(value, 0)
    for size, what in re.findall(r"static_assert\(sizeof\(ulma_(\w+)\) == (\d+)", text):
        found[f"{size.upper()}_BYTES"] = int(what)
    return found


def kind_enum() -> dict[str, int]:
    """The members of records.h's `enum ulma_kind`, the event kinds (ULMA_KIND_MAX left out)."""
    body = re.search(r"enum ulma_kind \{(.*?)\};", HEADER.read_text(), re.S)
    assert body, "no enum ulma_kind in records.h"
    return {name: int(value) for name, value in re.findall(r"ULMA_([A-Z0-9_]+) = (\d+)", body.group(1))
            if name != "KIND_MAX"}


def test_every_event_kind_in_records_h_is_exported_with_the_same_value_and_named() -> None:
    kinds = kind_enum()
    assert len(kinds) == header_numbers()["KIND_MAX"], kinds  # kinds run 1..KIND_MAX, none missed
    assert sorted(kinds.values()) == list(range(1, len(kinds) + 1)), kinds
    assert {name: _core.LAYOUT.get(name) for name in kinds} == kinds
    assert {value: name.lower() for name, value in kinds.items()} == records.KIND_NAMES


def test_every_number_the_extension_exports_is_the_one_in_records_h() -> None:
    numbers = header_numbers()
    exported = dict(_core.LAYOUT)
    missing = sorted(set(exported) - set(numbers))
    assert not missing, f"exported but not found in records.h: {missing}"
    assert {name: numbers[name] for name in exported} == exported


def test_event_records_round_trip_through_the_reference_codec() -> None:
    events = [records.Event(2**64 - 1, 2**32 - 1, records.CALL, 0xFF, 0xFFFF),
              records.Event(0, 0, records.SYNC, records.SYNC_BEGIN, 3)]
    data = records.encode(events)
    assert len(data) == 2 * records.EVENT_BYTES == 32
    assert list(records.decode(data)) == events
    assert list(records.decode(data + b"\x01\x02")) == events  # a torn tail is ignored
