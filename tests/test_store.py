from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from auditor.errors import StoreError
from auditor.model import Hit, Severity
from auditor.pipeline import Batch, Position, SourceCounters
from auditor.store import Store
from auditor.store.eventblocks import EVENT_COLUMNS
from auditor.store.queries import count_events, iter_events, iter_findings, source_status
from factories import make_event

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def hit(ts: datetime, count: int = 1, key: str = "198.51.100.7", digest: str | None = None) -> Hit:
    return Hit(
        rule_id="probe.sensitive-file",
        title="Sensitive file probe",
        category="scanner-probe",
        severity=Severity.MEDIUM,
        key=key,
        timestamp=ts,
        first_seen=ts,
        count=count,
        source="api",
        client_ip=key,
        evidence="GET /.env -> 404",
        controls=("PCI-DSS-4.0.1:6.4.2",),
        digest=digest,
        episode_gap_s=600,
    )


def test_store_file_is_owner_only_and_wal(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "sub" / "a.db")
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert os.stat(tmp_path / "sub" / "a.db").st_mode & 0o077 == 0
    assert os.stat(tmp_path / "sub").st_mode & 0o077 == 0
    s.close()
    Store.open(tmp_path / "sub" / "a.db").close()  # migrations are idempotent


def test_batch_commits_events_positions_and_counters_together(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "a.db")
    batch = Batch(
        events=[make_event(offset=i * 10) for i in range(3)],
        positions=[Position("fid", "api", "/x.log", 1, 2, 30, 30)],
        counters={"api": SourceCounters(lines_read=4, lines_parsed=3, lines_unparsed=1)},
    )
    s.write(batch)
    assert count_events(s) == 3
    pos = s.position("fid")
    assert pos is not None and pos.offset == 30
    st = source_status(s)
    assert st[0]["lines_read"] == 4 and st[0]["lines_unparsed"] == 1


def test_failed_batch_writes_nothing(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "a.db")
    s.conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON positions BEGIN SELECT RAISE(ABORT, 'disk'); END"
    )
    batch = Batch(events=[make_event()], positions=[Position("fid", "api", "/x", 1, 2, 10)])
    with pytest.raises(StoreError):
        s.write(batch)
    assert count_events(s) == 0


def test_hits_fold_into_one_finding_per_episode(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "a.db")
    s.write(Batch(hits=[hit(T0, 5, digest="d1"), hit(T0 + timedelta(minutes=1), digest="d2")]))
    s.write(Batch(hits=[hit(T0 + timedelta(minutes=5), digest="d1")]))  # same episode, next batch
    s.write(Batch(hits=[hit(T0 + timedelta(hours=2))]))  # gap > 600 s: a new episode
    rows = list(iter_findings(s))
    assert [r["count"] for r in rows] == [7, 1]
    assert rows[0]["distinct_values"] == 2
    assert rows[0]["controls"] == ["PCI-DSS-4.0.1:6.4.2"]


def test_findings_do_not_depend_on_how_hits_are_batched(tmp_path: Path) -> None:
    """Hits are folded in memory per batch: one batch or one batch per hit, same findings."""
    from dataclasses import replace

    hits = []
    for i in range(40):
        h = hit(T0 + timedelta(minutes=7 * i), key=f"k{i % 3}", digest=f"d{i % 5}")
        if i % 11 == 10:
            h = replace(h, severity=Severity.HIGH, evidence=f"worse {i}")
        hits.append(h)
    results = []
    for n, sizes in enumerate(([40], [1] * 40, [3, 17, 2, 18])):
        s = Store.open(tmp_path / f"{n}.db")
        i = 0
        for size in sizes:
            s.write(Batch(hits=hits[i : i + size]))
            i += size
        rows = [dict(r) for r in iter_findings(s)]
        results.append(sorted(rows, key=lambda r: (r["key"], r["first_seen_ms"])))
        s.close()
    assert results[0] == results[1] == results[2]
    assert len(results[0]) > 3  # several episodes per key, some upgraded
    assert any(r["evidence"].startswith("worse") for r in results[0])


def test_unwritable_path_is_a_store_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    with pytest.raises(StoreError, match="cannot open the store"):
        Store.open(ro / "a.db")


def test_open_readonly_missing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such store"):
        Store.open_readonly(tmp_path / "none.db")


def test_store_error_for_not_a_database(tmp_path: Path) -> None:
    p = tmp_path / "a.db"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        Store.open(p)
    assert isinstance(sqlite3.sqlite_version, str)


def test_path_below_a_file_is_a_store_error(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(StoreError, match="cannot open the store"):
        Store.open(f / "a.db")


def _events_row(ts_ms: int, source: str, path: str, exposures: str | None) -> tuple[object, ...]:
    return (ts_ms, source, "combined", "198.51.100.7", None, "GET", None, None, None, path,
            path, None, "1.1", 200, None, 5, None, None, "ua", None, None, None, None,
            "/var/log/a.log", ts_ms, exposures)  # fmt: skip


def test_a_store_with_an_events_table_moves_to_blocks(tmp_path: Path) -> None:
    """Stores written before m003 keep every event: rows move into compressed blocks."""
    db = tmp_path / "old.db"
    Store.open(db).close()
    conn = sqlite3.connect(db)
    cols = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
    conn.executescript(
        "DROP TABLE event_blocks;"
        " DELETE FROM _sqlite_migrations WHERE name = 'm003_event_blocks';"
        f" CREATE TABLE events (id INTEGER PRIMARY KEY, {cols});"
    )
    expo = '[{"pii_type": "email", "location": "query", "param": "e", "masked": "a***@b.org",'
    expo += ' "digest": "d1", "detail": null}]'
    rows = [_events_row(1000 + i, "api" if i % 3 else "edge", f"/x/{i}", None) for i in range(5000)]
    rows.append(_events_row(999, "api", "/first", expo))
    conn.executemany(f"INSERT INTO events ({cols}) VALUES ({','.join('?' * 26)})", rows)
    conn.commit()
    conn.close()
    s = Store.open(db)
    try:
        assert count_events(s) == 5001
        got = list(iter_events(s))
        assert [e["ts_ms"] for e in got] == sorted(e["ts_ms"] for e in got)
        assert got[0]["path"] == "/first" and got[0]["exposures"][0]["masked"] == "a***@b.org"
        assert {e["path"] for e in got} == {f"/x/{i}" for i in range(5000)} | {"/first"}
        assert len({e["id"] for e in got}) == 5001
        edge = list(iter_events(s, source="edge", since_ms=2000, limit=10))
        assert [e["ts_ms"] for e in edge] == [2002 + 3 * k for k in range(10)]
        assert {e["source"] for e in edge} == {"edge"}
        tables = {r[0] for r in s.conn.execute("SELECT name FROM sqlite_master")}
        assert "events" not in tables
    finally:
        s.close()


def test_events_are_read_in_time_order_across_sources_and_blocks(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "a.db")
    try:
        for k in range(3):
            batch = Batch()
            for i in range(3000):
                src = ("api", "edge")[i % 2]
                batch.events.append(
                    make_event(timestamp=T0 + timedelta(seconds=i * 3 + k), source=src)
                )
            s.write(batch)
        got = list(iter_events(s))
        assert len(got) == 9000
        assert [e["ts_ms"] for e in got] == sorted(e["ts_ms"] for e in got)
        since = int((T0 + timedelta(seconds=600)).timestamp() * 1000)
        until = since + 60_000
        window = list(iter_events(s, since_ms=since, until_ms=until, source="api"))
        assert window and all(since <= e["ts_ms"] < until and e["source"] == "api" for e in window)
        assert len(list(iter_events(s, client_ip="192.0.2.99"))) == 0
    finally:
        s.close()


def test_client_hours_merge_once_the_log_has_moved_on(tmp_path: Path) -> None:
    """Each batch's clients land as one part per hour; the parts of each hour before the
    newest but one are merged into one, also a part that comes late for such an hour,
    and the parts always add up to what was written."""
    h0 = 20_000 * 24 + 5
    s = Store.open(tmp_path / "a.db")

    def parts() -> list[int]:
        return [r[0] for r in s.conn.execute("SELECT hour FROM client_hour_parts ORDER BY 1")]

    def everything() -> dict[tuple[int, str], int]:
        rows = s.conn.execute(
            "SELECT hour, client_ip, sum(requests) FROM client_hours_all GROUP BY 1, 2"
        )
        return {(h, ip): n for h, ip, n in rows}

    s.write(Batch(client_hours=[(h0, {"192.0.2.1": 2, "2001:db8::1": 1})]))
    s.write(Batch(client_hours=[(h0, {"192.0.2.1": 3}), (h0 + 1, {"192.0.2.2": 1})]))
    assert parts() == [h0, h0, h0 + 1]
    s.write(Batch(client_hours=[(h0 + 2, {"192.0.2.1": 1})]))
    assert parts() == [h0, h0 + 1, h0 + 2]
    s.write(Batch(client_hours=[(h0, {"192.0.2.1": 4, 'a"b\\c': 1})]))  # late, odd text
    assert parts() == [h0, h0, h0 + 1, h0 + 2]
    s.write(Batch(client_hours=[(h0 + 3, {"192.0.2.9": 1}), (h0 + 1, {"192.0.2.2": 2})]))
    assert parts() == [h0, h0 + 1, h0 + 2, h0 + 3]
    assert everything() == {
        (h0, "192.0.2.1"): 9,
        (h0, "2001:db8::1"): 1,
        (h0, 'a"b\\c'): 1,
        (h0 + 1, "192.0.2.2"): 3,
        (h0 + 2, "192.0.2.1"): 1,
        (h0 + 3, "192.0.2.9"): 1,
    }
    assert s.conn.execute("SELECT count(*) FROM client_hours").fetchone() == (0,)
    s.close()


def test_client_parts_of_an_hour_under_way_merge_when_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon writes a batch every second or so: the parts of the hour under way are
    merged once there are ``MERGE_PARTS`` of them, also after a reopen."""
    from auditor.store import db

    monkeypatch.setattr(db, "MERGE_PARTS", 3)
    h = 20_000 * 24 + 5
    s = Store.open(tmp_path / "a.db")

    def parts() -> int:
        return int(s.conn.execute("SELECT count(*) FROM client_hour_parts").fetchone()[0])

    s.write(Batch(client_hours=[(h, {"192.0.2.1": 1})]))
    s.write(Batch(client_hours=[(h, {"192.0.2.1": 1})]))
    assert parts() == 2
    s.close()
    s = Store.open(tmp_path / "a.db")
    s.write(Batch(client_hours=[(h, {"192.0.2.2": 1})]))
    assert parts() == 1
    for _ in range(3):  # 2, 3 (merged: 1), 2
        s.write(Batch(client_hours=[(h, {"192.0.2.1": 1})]))
    assert parts() == 2
    rows = s.conn.execute(
        "SELECT client_ip, sum(requests) FROM client_hours_all GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert rows == [("192.0.2.1", 5), ("192.0.2.2", 1)]
    s.close()


def test_client_parts_with_wild_hours(tmp_path: Path) -> None:
    """Hostile times: a line from the far future does not close the hour under way (its
    parts would then be merged with every batch), and a batch with more hours than
    SQLite takes parameters is written."""
    h = 20_000 * 24 + 5
    s = Store.open(tmp_path / "a.db")
    busy = {f"192.0.2.{i}": 1 for i in range(20)}
    for _ in range(3):
        s.write(Batch(client_hours=[(h, busy), (h + 100_000, {"203.0.113.9": 1})]))
    n_h = s.conn.execute("SELECT count(*) FROM client_hour_parts WHERE hour = ?", (h,))
    assert n_h.fetchone() == (3,)  # still open: not merged
    wild = [(h - 50_000 + 2 * i, {"198.51.100.1": 1}) for i in range(40_000)]
    s.write(Batch(client_hours=wild))
    total = s.conn.execute("SELECT sum(requests) FROM client_hours_all").fetchone()[0]
    assert total == 3 * 21 + 40_000
    s.close()


@pytest.mark.parametrize("order", ["forward", "backward", "shuffled"])
def test_client_days_roll_up_gives_the_sums_of_the_hours(tmp_path: Path, order: str) -> None:
    """``client_days`` is rolled up a day at a time once the log moves on; rows that come
    late for a rolled-up day go to both tables. Whatever the order, top clients over any
    period equal the plain sum of ``client_hours``."""
    import random

    from auditor.store.report_queries import HOUR_MS, clients

    rnd = random.Random(order)
    h0 = 20_000 * 24  # an epoch hour at midnight
    batches = []
    for b in range(40):
        hours: dict[int, dict[str, int]] = {}
        base = h0 + b * 3  # four days of batches, each over a few hours
        for _ in range(30):
            ip = f"198.51.100.{rnd.randrange(12)}"
            per_ip = hours.setdefault(base + rnd.randrange(4), {})
            per_ip[ip] = per_ip.get(ip, 0) + rnd.randrange(1, 5)
        batches.append(Batch(client_hours=list(hours.items())))
    if order == "backward":
        batches.reverse()
    elif order == "shuffled":
        rnd.shuffle(batches)
    s = Store.open(tmp_path / "a.db")
    for batch in batches:
        s.write(batch)
    assert s.client_days_through() >= 20_002  # days were rolled up
    for start_h, end_h in [(h0, h0 + 24 * 5), (h0 + 5, h0 + 77), (h0 + 24, h0 + 48), (h0, h0 + 1)]:
        got = clients(s.conn, start_h * HOUR_MS, end_h * HOUR_MS, 50)
        want = dict(
            s.conn.execute(
                "SELECT client_ip, sum(requests) FROM client_hours_all"
                " WHERE hour >= ? AND hour < ? GROUP BY 1",
                (start_h, end_h),
            ).fetchall()
        )
        assert {r.client_ip: r.requests for r in got[0]} == want
        assert got[1] == len(want) and got[2] == sum(want.values())
    s.close()
