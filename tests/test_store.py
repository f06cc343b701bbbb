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
from auditor.store.queries import iter_findings, source_status
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
    assert s.conn.execute("SELECT count(*) FROM events").fetchone()[0] == 3
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
    assert s.conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0


def test_hits_fold_into_one_finding_per_episode(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "a.db")
    s.write(Batch(hits=[hit(T0, 5, digest="d1"), hit(T0 + timedelta(minutes=1), digest="d2")]))
    s.write(Batch(hits=[hit(T0 + timedelta(minutes=5), digest="d1")]))  # same episode, next batch
    s.write(Batch(hits=[hit(T0 + timedelta(hours=2))]))  # gap > 600 s: a new episode
    rows = list(iter_findings(s))
    assert [r["count"] for r in rows] == [7, 1]
    assert rows[0]["distinct_values"] == 2
    assert rows[0]["controls"] == ["PCI-DSS-4.0.1:6.4.2"]


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
