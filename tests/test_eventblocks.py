"""Serialized store rows: one value per Event field, in the Event's field order, and back."""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import orjson
import pytest

from auditor.model import Event, Exposure
from auditor.store.eventblocks import (
    BLOCK_MAX,
    EVENT_COLUMNS,
    compress_block,
    serialize_events,
    unpack,
)
from factories import make_event


def _distinct_event(source: str = "api") -> Event:
    """Every field a value of its own, so a swapped pair of fields shows."""
    values: dict[str, object] = {}
    for i, f in enumerate(dataclasses.fields(Event)):
        if f.name in ("timestamp", "exposures"):
            continue
        values[f.name] = f"v{i}" if f.name != "source" else source
    values["exposures"] = (Exposure("email", "query", "to", "a***@example.com", "d1", None),)
    return make_event(**values)


def test_rows_follow_the_event_fields_in_order() -> None:
    ev = _distinct_event()
    (block,) = serialize_events([ev], [1234])
    (row,) = unpack(compress_block(block).data)
    assert len(row) == len(EVENT_COLUMNS)
    assert row[0] == 1234
    names = [f.name for f in dataclasses.fields(Event)]
    for name, value in zip(names[1:-1], row[1:-1], strict=True):
        assert value == getattr(ev, name), name
    assert row[-1] == [
        {
            "pii_type": "email",
            "location": "query",
            "param": "to",
            "masked": "a***@example.com",
            "digest": "d1",
            "detail": None,
        }
    ]


def test_blocks_hold_one_source_each_and_at_most_block_max_events() -> None:
    events = [_distinct_event("a" if i % 3 else "b") for i in range(BLOCK_MAX + 10)]
    blocks = serialize_events(events, list(range(len(events))))
    assert all(b.n <= BLOCK_MAX for b in blocks)
    assert sum(b.n for b in blocks) == len(events)
    for b in blocks:
        rows = unpack(compress_block(b).data)
        assert {r[1] for r in rows} == {b.source}
        assert (b.first_ms, b.last_ms) == (rows[0][0], rows[-1][0])


def test_blocks_are_zstd_and_blocks_of_earlier_versions_zlib_still_read() -> None:
    events = [_distinct_event() for _ in range(3)]
    [block] = serialize_events(events, [1, 2, 3])
    stored = compress_block(block)
    assert stored.data[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
    rows = unpack(stored.data)
    assert rows == orjson.loads(block.data)
    assert unpack(zlib.compress(block.data, 1)) == rows  # as stored before zstd


@pytest.mark.parametrize("data", [b"", b"\x28\xb5\x2f\xfd garbage", b"x\x01 garbage", b"\x00" * 9])
def test_a_damaged_block_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="damaged event block"):
        unpack(data)


@pytest.mark.parametrize("hostile", [False, True])
def test_each_row_can_be_read_alone_from_its_offsets(hostile: bool) -> None:
    """One dump of the block is cut at its row boundaries; a logged text holding what
    separates two rows (``],[``) makes the rows dump one by one instead."""
    events = [_distinct_event() for _ in range(5)]
    if hostile:
        events[2] = dataclasses.replace(events[2], path='/a"],[1,"x"],[', user_agent="],[")
    offsets: list[Any] = []
    [block] = serialize_events(events, [1, 2, 3, 4, 5], offsets)
    [starts] = offsets
    assert len(starts) == 6 and starts[0] == 1 and starts[-1] == len(block.data)
    rows = orjson.loads(block.data)
    for r, row in enumerate(rows):
        assert orjson.loads(block.data[starts[r] : starts[r + 1] - 1]) == row
    assert rows[2][9] == ('/a"],[1,"x"],[' if hostile else events[2].path)
