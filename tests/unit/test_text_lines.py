"""``_core.text_lines``, the C writer of ``--format text`` lines, against the Python it replaced:
ticks clamped never to go backwards, exact integer ns for any u64 tick and any scale the
schema lets through (ns_per_tick up to 1e6: a scale past 2^64), tails looked up by a record's
second word, made on demand, and an empty tail leaving the record out."""

from __future__ import annotations

import struct

import hypothesis.strategies as st
from hypothesis import given

from ulma import _core
from ulma.format import schema
from ulma.format.runinfo import SCALE_BITS

U64 = (1 << 64) - 1
RECORD = struct.Struct("<QQ")  # tick, then id | kind << 32 | flags << 40 | aux << 48


def model(rows: list[tuple[int, int]], last: int | None, t0: int, scale: int,
          tail: dict[int, bytes]) -> tuple[bytes, int]:
    """What the text exporter wrote before: Python integers, record by record."""
    out = []
    prev = last if last is not None else (max(rows[0][0], t0) if rows else 0)
    for tick, word in rows:
        prev = max(prev, tick)
        if tail[word]:
            out.append(str((prev - t0) * scale >> SCALE_BITS).encode() + tail[word])
    return b"".join(out), prev


def made_by_c(rows: list[tuple[int, int]], last: int | None, t0: int, scale: int,
              tail: dict[int, bytes], keep: set[int]) -> tuple[bytes, int]:
    """The C writer, with the tails of `keep` stored as they are made (the others made each time)."""
    stored: dict[int, bytes] = {}
    made: list[int] = []

    def make(word: int) -> bytes:
        made.append(word)
        if word in keep:
            stored[word] = tail[word]
        return tail[word]

    data = b"".join(RECORD.pack(t, w) for t, w in rows)
    result = _core.text_lines(data, last, t0, scale >> 64, scale & U64, stored, make)
    assert len(made) == len(set(made) & keep) + sum(1 for _t, w in rows if w not in keep)
    return result


ticks = st.one_of(st.integers(0, U64), st.integers(0, 1000), st.integers(U64 - 1000, U64))
words = st.one_of(st.integers(0, U64), st.sampled_from([1, 1 << 32 | 1, 2 << 32 | 7, 1 << 56 | 3, 0]))
scales = st.floats(*schema.NS_PER_TICK_RANGE).map(lambda ns: round(ns * (1 << SCALE_BITS)))


@given(rows=st.lists(st.tuples(ticks, words), max_size=300), last=st.none() | ticks, t0=ticks,
       scale=scales, data=st.data())
def test_text_lines_are_the_python_writers_to_the_byte(rows: list[tuple[int, int]], last: int | None,
                                                        t0: int, scale: int, data: st.DataObject) -> None:
    if last is not None:
        last = max(last, t0)  # as the exporter: a thread's last tick is never before the start
    distinct = sorted({w for _t, w in rows})
    tail = {w: data.draw(st.sampled_from([b"", b"\tcall\tf\tx.py:1\n", f"\t{w}\n".encode()]))
            for w in distinct}
    keep = set(data.draw(st.lists(st.sampled_from(distinct), unique=True))) if distinct else set()
    assert made_by_c(rows, last, t0, scale, tail, keep) == model(rows, last, t0, scale, tail)


def test_largest_ticks_and_scale_give_exact_times_past_64_bits() -> None:
    scale = round(schema.NS_PER_TICK_RANGE[1] * (1 << SCALE_BITS))
    assert scale >> 64  # the scale itself needs more than 64 bits
    rows = [(U64, 5), (3, 5), (U64, 6)]  # the tick that goes back is clamped
    tail = {5: b"\ta\n", 6: b"\tb\n"}
    text, last = made_by_c(rows, None, 0, scale, tail, {5, 6})
    assert text == b"".join(str(U64 * scale >> SCALE_BITS).encode() + tail[w] for _t, w in rows)
    assert last == U64 and int(text.split(b"\t")[0]) > 1 << 64


def test_words_sharing_a_cache_slot_keep_their_own_tails() -> None:
    rows = [(i, w) for i, w in enumerate([1, 1 + (1 << 40), 1, 1 + (1 << 40)] * 50 + list(range(2, 600)))]
    tail = {w: f"\t{w}\n".encode() for _t, w in rows}
    assert made_by_c(rows, None, 0, 1 << SCALE_BITS, tail, set(tail)) == model(rows, None, 0, 1 << SCALE_BITS,
                                                                              tail)
