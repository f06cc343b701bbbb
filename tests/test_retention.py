"""Retention: cut-offs are pure; pruning deletes by log time, in committed chunks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from auditor.config import RetentionConfig
from auditor.model import Event, Exposure, Hit, Line, Severity
from auditor.pipeline import Pipeline, Position
from auditor.store import Store
from auditor.store.queries import iter_events
from auditor.store.retention import cutoffs, prune, prune_path, prune_steps
from factories import stored_events

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
RET = RetentionConfig(events_days=90, findings_days=400)


def _decode(line: Line) -> Event:
    # Test lines are "<iso time> <ip> <path> [<digest>]": the decoder is not under test here.
    parts = line.text.split()
    ts = datetime.fromisoformat(parts[0])
    exposures: tuple[Exposure, ...] = ()
    if len(parts) > 3:
        exposures = (Exposure("email", "query", "email", "j***@example.org", parts[3]),)
    return Event(
        timestamp=ts,
        source=line.source,
        format="test",
        client_ip=parts[1],
        client_port=None,
        method="GET",
        scheme="https",
        host=None,
        server_port=None,
        path=parts[2],
        route=parts[2],
        query=None,
        http_version="1.1",
        status=200,
        bytes_in=None,
        bytes_out=10,
        duration_ms=None,
        user_name=None,
        user_agent=None,
        referrer=None,
        tls_version=None,
        request_id=None,
        forwarded_for=None,
        file=line.file,
        offset=line.offset,
        exposures=exposures,
    )


def _write(store: Store, source: str, texts: list[str], hits: Sequence[Hit] = ()) -> None:
    pipe = Pipeline({source: _decode}, None)
    lines = [
        Line(source, f"/logs/{source}.log", i * 100, i * 100 + 99, t) for i, t in enumerate(texts)
    ]
    batch = pipe.process(
        lines, [Position(f"fid-{source}", source, f"/logs/{source}.log", 1, 2, 99)]
    )
    batch.hits.extend(hits)
    store.write(batch)


def _hit(rule: str, first: datetime, last: datetime, digest: str | None = None) -> Hit:
    return Hit(
        rule_id=rule,
        title=rule,
        category="scanner-probe",
        severity=Severity.parse("medium"),
        key="203.0.113.9",
        timestamp=last,
        first_seen=first,
        count=1,
        source="api",
        client_ip="203.0.113.9",
        evidence="GET /.env",
        controls=("PCI-DSS-4.0.1:6.4.2",),
        digest=digest,
        episode_gap_s=60,
    )


def _count(store: Store, table: str) -> int:
    if table == "events":
        return len(stored_events(store.conn))
    return int(store.conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "audit.db")
    yield s
    s.close()


def _iso(dt: datetime) -> str:
    return dt.isoformat()


@pytest.mark.parametrize(
    ("events_days", "findings_days", "events_at", "day"),
    [
        (90, 400, "2026-04-01T12:00:00+00:00", "2025-05-26"),
        (1, 1, "2026-06-29T12:00:00+00:00", "2026-06-29"),
        (365, 365, "2025-06-30T12:00:00+00:00", "2025-06-30"),
    ],
)
def test_cutoffs_are_pure_and_in_log_time(
    events_days: int, findings_days: int, events_at: str, day: str
) -> None:
    c = cutoffs(RetentionConfig(events_days, findings_days), NOW)
    assert datetime.fromtimestamp(c.events_ms / 1000, UTC).isoformat() == events_at
    findings_at = NOW - timedelta(days=findings_days)
    assert c.findings_ms == int(findings_at.timestamp() * 1000)
    assert c.minute == c.findings_ms // 60_000
    assert c.hour == c.findings_ms // 3_600_000
    assert c.day == day


def test_naive_now_means_utc() -> None:
    assert cutoffs(RET, NOW.replace(tzinfo=None)) == cutoffs(RET, NOW)


def test_prune_deletes_only_what_is_older_than_the_periods(store: Store) -> None:
    very_old = NOW - timedelta(days=500)  # past both periods
    old = NOW - timedelta(days=100)  # past events_days only
    recent = NOW - timedelta(days=1)
    _write(
        store,
        "api",
        [
            f"{_iso(very_old)} 192.0.2.1 /very-old d1",
            f"{_iso(old)} 192.0.2.2 /old d2",
            f"{_iso(recent)} 192.0.2.3 /recent d3",
        ],
        hits=[
            _hit("r.gone", very_old, very_old + timedelta(seconds=5), digest="aa"),
            # A long episode: first seen 500 days ago, last seen yesterday. It stays.
            _hit("r.long", very_old, recent),
            _hit("r.kept", old, old, digest="bb"),
        ],
    )
    assert _count(store, "findings") == 3
    store.journal("start", detail="test")
    store.conn.execute("UPDATE journal SET at_ms = ?", (int(very_old.timestamp() * 1000),))

    result = prune(store, RET, NOW)

    paths = [e["path"] for e in iter_events(store)]
    assert paths == ["/recent"]
    rules = sorted(r[0] for r in store.conn.execute("SELECT rule_id FROM findings"))
    assert rules == ["r.kept", "r.long"]
    digests = [r[0] for r in store.conn.execute("SELECT digest FROM finding_digests")]
    assert digests == ["bb"]
    days = sorted(r[0] for r in store.conn.execute("SELECT DISTINCT day FROM exposures"))
    assert days == [old.strftime("%Y-%m-%d"), recent.strftime("%Y-%m-%d")]
    assert _count(store, "minute_stats") == 2
    assert _count(store, "client_hours_all") == 2  # the newest hour is still in parts
    assert _count(store, "journal") == 0
    # Exactly-once machinery is never pruned.
    assert _count(store, "positions") == 1
    assert _count(store, "source_counters") == 1
    assert result.deleted == {
        "events": 2,
        "findings": 1,
        "minute_stats": 1,
        "client_hours": 1,
        "client_days": 1,  # the old day, rolled up when the log moved on
        "exposures": 1,
        "journal": 1,
    }
    assert result.total == 8


def test_prune_deletes_the_client_hours_kept_in_parts(store: Store) -> None:
    """Requests per client and hour are kept as JSON parts (``client_hour_parts``), and
    rows of ``client_hours`` from earlier versions: both go when their hour is old."""
    from auditor.pipeline import Batch

    old_hour = int((NOW - timedelta(days=500)).timestamp()) // 3600
    store.write(Batch(client_hours=[(old_hour - 5, {"192.0.2.1": 3})]))
    store.write(Batch(client_hours=[(old_hour, {"192.0.2.2": 1})]))
    store.conn.execute(
        "INSERT INTO client_hours (hour, client_ip, requests) VALUES (?, '192.0.2.3', 1)",
        (old_hour - 9,),
    )
    assert _count(store, "client_hour_parts") == 2

    result = prune(store, RET, NOW)

    assert result.deleted["client_hours"] == 3
    assert _count(store, "client_hours_all") == 0


def test_prune_again_deletes_nothing(store: Store) -> None:
    _write(store, "api", [f"{_iso(NOW - timedelta(days=200))} 192.0.2.1 /x"])
    assert prune(store, RET, NOW).total == 1
    again = prune(store, RET, NOW)
    assert again.total == 0
    assert again.chunks == 0


def test_chunks_are_bounded_and_each_is_committed(tmp_path: Path, store: Store) -> None:
    old = NOW - timedelta(days=600)
    texts = [f"{_iso(old + timedelta(minutes=i))} 192.0.2.{i % 50} /p{i}" for i in range(100)]
    for source in ("a", "b", "c"):
        _write(store, source, texts)
    cutoff = cutoffs(RET, NOW).events_ms
    other = Store.open(tmp_path / "audit.db")
    steps = []
    try:
        for step in prune_steps(store, RET, NOW, chunk_rows=7):
            # Events go a block at a time (a block may hold more than a chunk).
            assert step.rows > 0 and (step.table == "events" or step.rows <= 7)
            steps.append(step)
            if step.table == "events":
                # Another connection sees each chunk committed...
                left = sum(1 for e in stored_events(other.conn) if e["ts_ms"] < cutoff)
                assert left == 300 - sum(s.rows for s in steps if s.table == "events")
            # ... and can write between two chunks.
            _write(other, "live", [f"{_iso(NOW)} 192.0.2.200 /live"])
    finally:
        other.close()
    assert len([s for s in steps if s.table == "events"]) == 3  # one block per write of 100
    assert {s.table for s in steps} == {"events", "minute_stats", "client_hours", "client_days"}
    assert _count(store, "events") == len(steps)  # only the live writes remain
    assert {e["source"] for e in stored_events(store.conn)} == {"live"}
    assert _count(store, "minute_stats") == 1


def test_chunk_rows_must_be_positive(store: Store) -> None:
    with pytest.raises(ValueError, match="chunk_rows"):
        list(prune_steps(store, RET, NOW, chunk_rows=0))


def test_pruned_rows_leave_no_trace_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    store = Store.open(path)
    marker = "/zz-retention-marker-7f3a"
    _write(store, "api", [f"{_iso(NOW - timedelta(days=200))} 192.0.2.1 {marker}"] * 50)
    _write(store, "api", [f"{_iso(NOW)} 192.0.2.1 /fresh"])
    assert prune(store, RET, NOW).deleted["events"] == 50
    store.close()  # the last connection checkpoints and removes the WAL
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    assert marker.encode() not in path.read_bytes()


def test_incremental_vacuum_shrinks_a_store_built_for_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    store = Store.open(path)
    store.conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    store.conn.execute("VACUUM")
    old = NOW - timedelta(days=300)
    _write(store, "api", [f"{_iso(old)} 192.0.2.1 /{'x' * 200}{i}" for i in range(3000)])
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = path.stat().st_size
    result = prune(store, RET, NOW)
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert result.vacuumed_pages > 0
    assert path.stat().st_size < before
    store.close()


def test_without_auto_vacuum_nothing_is_vacuumed(store: Store) -> None:
    _write(store, "api", [f"{_iso(NOW - timedelta(days=300))} 192.0.2.1 /x"])
    assert prune(store, RET, NOW).vacuumed_pages == 0
    assert prune(store, RET, NOW, vacuum=False).vacuumed_pages == 0


def test_prune_path_uses_its_own_connection_beside_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    writer = Store.open(path)
    try:
        _write(writer, "api", [f"{_iso(NOW - timedelta(days=200))} 192.0.2.1 /old"] * 20)
        result = prune_path(path, RET, NOW, pause_s=0)
        assert result.deleted["events"] == 20
        _write(writer, "api", [f"{_iso(NOW)} 192.0.2.1 /new"])  # the writer is not blocked
        assert _count(writer, "events") == 1
    finally:
        writer.close()


def test_the_daemon_prunes_once_a_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's retention task prunes on its own connection, then sleeps a day."""
    import asyncio

    from auditor import daemon
    from auditor.config import Config, StoreConfig

    path = tmp_path / "audit.db"
    writer = Store.open(path)
    old = datetime.now(UTC) - timedelta(days=200)
    try:
        _write(writer, "api", [f"{_iso(old)} 192.0.2.1 /old"] * 5)
    finally:
        writer.close()
    monkeypatch.setattr(daemon, "RETENTION_FIRST_S", 0)
    config = Config(store=StoreConfig(path=path), retention=RET)

    async def one_round() -> None:
        task = asyncio.create_task(daemon.retention(config))
        for _ in range(200):
            await asyncio.sleep(0.05)
            check = Store.open(path)
            try:
                if not stored_events(check.conn):
                    break
            finally:
                check.close()
        task.cancel()

    asyncio.run(one_round())
    check = Store.open(path)
    try:
        assert stored_events(check.conn) == []
    finally:
        check.close()
