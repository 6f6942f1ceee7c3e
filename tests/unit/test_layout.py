"""Python reads the record format from the C header's own numbers."""

from __future__ import annotations

import re
from pathlib import Path

from ulma import _core
from ulma.format import records

HEADER = Path(__file__).resolve().parents[2] / "src" / "ulma" / "_core" / "records.h"


def test_every_kind_in_records_h_is_exported_with_the_same_value() -> None:
    text = HEADER.read_text()
    kinds = dict(re.findall(r"ULMA_([A-Z_]+) = (\d+),", text))
    assert kinds, "no enum values found in records.h"
    for name in ("CALL", "RETURN", "UNWIND", "YIELD", "RESUME", "THROW", "SYNC", "MARK"):
        assert _core.LAYOUT[name] == int(kinds[name]), name


def test_event_records_round_trip_through_the_reference_codec() -> None:
    events = [records.Event(2**64 - 1, 2**32 - 1, records.CALL, 0xFF, 0xFFFF),
              records.Event(0, 0, records.SYNC, records.SYNC_BEGIN, 3)]
    data = records.encode(events)
    assert len(data) == 2 * records.EVENT_BYTES == 32
    assert list(records.decode(data)) == events
    assert list(records.decode(data + b"\x01\x02")) == events  # a torn tail is ignored
