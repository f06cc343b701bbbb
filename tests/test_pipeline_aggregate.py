"""Per-minute and per-client aggregates match a plain count, whatever the interleaving of
sources and minutes in a batch (the aggregation looks stats up once per run)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.pipeline import Batch, Pipeline, epoch_ms
from factories import make_event

T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.integers(0, 200),  # seconds after T0: a few minutes, an hour boundary never
            st.sampled_from([200, 302, 401, 404, 503, None]),
            st.sampled_from(["http", "https", None]),
        ),
        max_size=80,
    )
)
def test_minute_stats_equal_a_plain_count(
    rows: list[tuple[str, int, int | None, str | None]],
) -> None:
    events = [
        make_event(source=s, timestamp=T0 + timedelta(seconds=sec), status=status, scheme=scheme)
        for s, sec, status, scheme in rows
    ]
    batch = Batch(events=events)
    Pipeline._aggregate(batch)
    expected: Counter[tuple[str, int, str]] = Counter()
    for ev, (s, sec, status, scheme) in zip(events, rows, strict=True):
        minute = int((T0 + timedelta(seconds=sec)).timestamp()) // 60
        expected[(s, minute, "requests")] += 1
        st_ = status or 0
        band = (
            "2xx"
            if 200 <= st_ < 300
            else "3xx"
            if 300 <= st_ < 400
            else "4xx"
            if 400 <= st_ < 500
            else "5xx"
            if st_ >= 500
            else None
        )
        if band:
            expected[(s, minute, band)] += 1
        if st_ in (401, 403):
            expected[(s, minute, "auth")] += 1
        if scheme == "http":
            expected[(s, minute, "http")] += 1
        expected[(s, minute, "bytes")] += ev.bytes_out or 0
    got: Counter[tuple[str, int, str]] = Counter()
    for (s, minute), m in batch.minutes.items():
        for name, value in (
            ("requests", m.requests),
            ("2xx", m.status_2xx),
            ("3xx", m.status_3xx),
            ("4xx", m.status_4xx),
            ("5xx", m.status_5xx),
            ("auth", m.auth_failures),
            ("http", m.plain_http),
            ("bytes", m.bytes_out),
        ):
            if value:
                got[(s, minute, name)] += value
    assert got == +expected
    assert sum(sum(c.values()) for _, c in batch.client_hours) == len(events)
    per_ip: Counter[tuple[int, str]] = Counter()
    for ev in events:
        per_ip[(int(ev.timestamp.timestamp()) // 3600, ev.client_ip or "")] += 1
    parts: Counter[tuple[int, str]] = Counter()
    for hour, clients in batch.client_hours:
        for ip, n in clients.items():
            parts[(hour, ip)] += n
    assert parts == per_ip


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 999_999)), max_size=60))
def test_epoch_ms_of_shared_and_own_datetimes(stamps: list[tuple[int, int]]) -> None:
    """Runs of one datetime object, objects met again later, equal times in other objects:
    each event's epoch ms is its own time's."""
    shared = {s: T0 + timedelta(seconds=s) for s, _ in stamps}
    events = [
        make_event(timestamp=shared[s] if us % 2 else T0 + timedelta(seconds=s, microseconds=us))
        for s, us in stamps
    ]
    assert epoch_ms(events) == [int(e.timestamp.timestamp() * 1000) for e in events]
