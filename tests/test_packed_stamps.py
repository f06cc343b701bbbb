"""Timestamps travel between processes as epoch microseconds (auditor.packedevents): the
events built back have exactly the timestamps they were decoded with."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.formats import FormatSpec, build_decoder
from auditor.model import Event, Line
from auditor.packedevents import pack
from auditor.pipeline import epoch_ms
from auditor.redact import Redactor

_LINE = (
    '{"start_time":"2026-11-20T08:00:00.007Z","method":"GET","path":"/a?b=1",'
    '"protocol":"HTTP/1.1","response_code":200,"bytes_sent":10,"duration":3,'
    '"downstream_remote_address":"203.0.113.1:4000",":authority":"api.example.com"}'
)


def _event() -> Event:
    decode = build_decoder(FormatSpec("envoy-json"), Redactor(b"k" * 32), "api")
    ev = decode(Line("api", "/a.log", 0, len(_LINE), _LINE))
    assert ev is not None
    return ev


BASE = _event()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
moments = st.integers(-(10**15), 253_402_300_799_999_999).map(
    lambda us: _EPOCH + timedelta(microseconds=us)
)


@settings(max_examples=80, deadline=None)
@given(st.lists(moments, min_size=1, max_size=40), st.lists(st.integers(0, 39), max_size=80))
def test_timestamps_come_back_exactly(times: list[datetime], picks: list[int]) -> None:
    # the same datetime object for runs and repeats of events, as decoders share them
    order = [times[p % len(times)] for p in picks] or times
    events = [replace(BASE, timestamp=ts, offset=i) for i, ts in enumerate(order)]
    packed = pack(events, epoch_ms(events), None)
    built = packed.events()
    assert [e.timestamp for e in built.all()] == order
    assert all(e.timestamp.tzinfo is UTC for e in built.all())
    assert built.seconds() == [ts.timestamp() for ts in order]
    one = pack(events, epoch_ms(events), ("source",)).events()
    assert [one[i] for i in reversed(range(len(one)))] == list(reversed(events))


def test_events_sharing_a_timestamp_share_one_object() -> None:
    ts = datetime(2026, 11, 20, 8, 0, 0, 7000, tzinfo=UTC)
    events = [replace(BASE, timestamp=ts, offset=i) for i in range(3)]
    packed = pack(events, epoch_ms(events), None)
    assert len(packed.stamps) == 1
    built = packed.events().all()
    assert built == events
    assert built[0].timestamp is built[2].timestamp
