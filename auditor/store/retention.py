"""Retention: delete what is older than the configured periods, a little at a time.

Two halves, as everywhere in the project: :func:`cutoffs` is pure (config + ``now`` →
the log-time limits), and :func:`prune` / :func:`prune_steps` do the deletes.

- ``events`` go after ``[retention] events_days``, by their log time (``ts_ms``).
- ``findings`` (with their ``finding_digests``) go after ``[retention] findings_days``, by
  the log time they were last seen. The aggregates a report reads (``minute_stats``,
  ``client_hours``, ``client_days``, ``exposures``) and the operational ``journal`` are kept exactly as long
  as findings, so a report over any retained period is complete.
- File positions, source counters and detector state are never pruned: they are what
  makes reading exactly-once, not history.

Every chunk of at most ``chunk_rows`` rows is its own transaction, so the daemon's writer
(another connection, or the same thread between batches) waits at most one chunk. The
store has ``secure_delete`` on, so deleted rows are overwritten, not left in free pages.
The file does not shrink unless the database uses ``auto_vacuum=INCREMENTAL``; then
:func:`prune` returns freed pages to the file system in bounded steps too.

The daemon calls ``prune(store, config.retention, now)`` once a day, or, from the event
loop with a connection of its own in a worker thread::

    await asyncio.to_thread(prune_path, config.store.path, config.retention, now)

Report files are pruned by the report scheduler (``[report] retention_days``), not here.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from auditor.config import RetentionConfig
from auditor.store.db import Store
from auditor.store.eventblocks import pack_block, unpack

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 5000
_VACUUM_PAGES = 2000  # pages freed per incremental-vacuum step (8 MiB at 4 KiB pages)
_AUTO_VACUUM_INCREMENTAL = 2


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Log-time limits: rows strictly older than these are deleted."""

    events_ms: int  # events.ts_ms < events_ms
    findings_ms: int  # findings.last_seen_ms, journal.at_ms < findings_ms
    minute: int  # minute_stats.minute < minute (epoch minutes)
    hour: int  # client_hours.hour < hour (epoch hours)
    day: str  # exposures.day < day ('YYYY-MM-DD', UTC)


def cutoffs(retention: RetentionConfig, now: datetime) -> Cutoffs:
    """Compute the limits for ``now`` (an aware datetime; naive means UTC).

    Aggregates are cut on whole buckets, so a bucket that straddles the limit is kept.

    >>> c = cutoffs(RetentionConfig(events_days=1, findings_days=2),
    ...             datetime(2026, 1, 3, 12, 30, tzinfo=UTC))
    >>> c.day, datetime.fromtimestamp(c.events_ms / 1000, UTC).isoformat()
    ('2026-01-01', '2026-01-02T12:30:00+00:00')
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    events_at = now - timedelta(days=retention.events_days)
    findings_at = now - timedelta(days=retention.findings_days)
    findings_ms = int(findings_at.timestamp() * 1000)
    return Cutoffs(
        events_ms=int(events_at.timestamp() * 1000),
        findings_ms=findings_ms,
        minute=findings_ms // 60_000,
        hour=findings_ms // 3_600_000,
        day=findings_at.astimezone(UTC).strftime("%Y-%m-%d"),
    )


@dataclass(slots=True)
class PruneResult:
    """Rows deleted per table, and the pages returned to the file system."""

    cutoffs: Cutoffs
    deleted: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    vacuumed_pages: int = 0

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


@dataclass(frozen=True, slots=True)
class PruneStep:
    """One committed chunk: which table, how many rows."""

    table: str
    rows: int


def _scalar(store: Store, sql: str, *args: object) -> Any:
    # fetchall, not fetchone: a statement left un-reset keeps its table locked.
    rows = store.conn.execute(sql, args).fetchall()
    return rows[0][0] if rows else None


def _chunk_events(store: Store, c: Cutoffs, n: int) -> int:
    """Delete about ``n`` expired events, block by block. A block that straddles the cutoff
    is rewritten with only its newer events (it then no longer counts as expired)."""
    cut = c.events_ms
    deleted = 0
    while deleted < n:
        rows = store.conn.execute(
            "SELECT id, source, n, data FROM event_blocks WHERE first_ms < ?"
            " ORDER BY first_ms LIMIT 1",
            (cut,),
        ).fetchall()
        if not rows:
            break
        block_id, source, count, data = rows[0]
        keep = [r for r in unpack(data) if r[0] >= cut]
        if not keep:
            store.conn.execute("DELETE FROM event_blocks WHERE id = ?", (block_id,))
        else:
            b = pack_block(source, keep)
            store.conn.execute(
                "UPDATE event_blocks SET first_ms = ?, last_ms = ?, n = ?, data = ? WHERE id = ?",
                (b.first_ms, b.last_ms, b.n, b.data, block_id),
            )
        deleted += count - len(keep)
    return deleted


def _chunk_findings(store: Store, c: Cutoffs, n: int) -> int:
    ids = [
        (r[0],)
        for r in store.conn.execute(
            "SELECT id FROM findings WHERE last_seen_ms < ? ORDER BY last_seen_ms LIMIT ?",
            (c.findings_ms, n),
        )
    ]
    if ids:
        store.conn.executemany("DELETE FROM finding_digests WHERE finding_id = ?", ids)
        store.conn.executemany("DELETE FROM findings WHERE id = ?", ids)
    return len(ids)


def _chunk_minute_stats(store: Store, c: Cutoffs, n: int) -> int:
    # The primary key is (source, minute): walk the sources with index seeks, then delete a
    # key range per source, so no chunk scans the whole table.
    deleted = 0
    source = _scalar(store, "SELECT min(source) FROM minute_stats")
    while source is not None and deleted < n:
        cur = store.conn.execute(
            "DELETE FROM minute_stats WHERE source = ? AND minute IN"
            " (SELECT minute FROM minute_stats WHERE source = ? AND minute < ?"
            "  ORDER BY minute LIMIT ?)",
            (source, source, c.minute, n - deleted),
        )
        deleted += cur.rowcount
        source = _scalar(store, "SELECT min(source) FROM minute_stats WHERE source > ?", source)
    return deleted


def _chunk_client_hours(store: Store, c: Cutoffs, n: int) -> int:
    # Requests per client kept as JSON parts (see Store._client_hours) go first.
    parts = store.conn.execute(
        "DELETE FROM client_hour_parts WHERE id IN"
        " (SELECT id FROM client_hour_parts WHERE hour < ? ORDER BY hour LIMIT ?)",
        (c.hour, n),
    ).rowcount
    if parts >= n:
        return parts
    cur = store.conn.execute(
        "DELETE FROM client_hours WHERE (hour, client_ip) IN"
        " (SELECT hour, client_ip FROM client_hours WHERE hour < ? ORDER BY hour LIMIT ?)",
        (c.hour, n - parts),
    )
    return parts + cur.rowcount


def _chunk_client_days(store: Store, c: Cutoffs, n: int) -> int:
    # Whole days before the first kept hour (a day that straddles the limit is kept).
    cur = store.conn.execute(
        "DELETE FROM client_days WHERE (day, client_ip) IN"
        " (SELECT day, client_ip FROM client_days WHERE day < ? ORDER BY day LIMIT ?)",
        (c.hour // 24, n),
    )
    return cur.rowcount


def _chunk_exposures(store: Store, c: Cutoffs, n: int) -> int:
    cols = "day, source, pii_type, location, route, param, digest"
    cur = store.conn.execute(
        f"DELETE FROM exposures WHERE ({cols}) IN"
        f" (SELECT {cols} FROM exposures WHERE day < ? ORDER BY day LIMIT ?)",
        (c.day, n),
    )
    return cur.rowcount


def _chunk_journal(store: Store, c: Cutoffs, n: int) -> int:
    cur = store.conn.execute(
        "DELETE FROM journal WHERE id IN"
        " (SELECT id FROM journal WHERE at_ms < ? ORDER BY at_ms LIMIT ?)",
        (c.findings_ms, n),
    )
    return cur.rowcount


_TABLES = (
    ("events", _chunk_events),
    ("findings", _chunk_findings),
    ("minute_stats", _chunk_minute_stats),
    ("client_hours", _chunk_client_hours),
    ("client_days", _chunk_client_days),
    ("exposures", _chunk_exposures),
    ("journal", _chunk_journal),
)


def prune_steps(
    store: Store, retention: RetentionConfig, now: datetime, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[PruneStep]:
    """Delete expired rows one committed chunk at a time, yielding after each chunk.

    A caller that shares the connection with the writer (the daemon's writer thread) can
    interleave batches between steps; a caller with its own connection can simply
    exhaust the iterator. Chunks that delete nothing are not yielded.
    """
    if chunk_rows <= 0:
        raise ValueError(f"chunk_rows must be greater than 0, got {chunk_rows}")
    c = cutoffs(retention, now)
    for table, chunk in _TABLES:
        while True:
            with store.transaction():
                rows = chunk(store, c, chunk_rows)
            if rows == 0:
                break
            yield PruneStep(table, rows)
            if rows < chunk_rows:
                break


def _incremental_vacuum(store: Store, pause_s: float) -> int:
    """Return free pages to the file system in steps, if the store was built for it."""
    conn = store.conn
    if _scalar(store, "PRAGMA auto_vacuum") != _AUTO_VACUUM_INCREMENTAL:
        return 0
    freed = 0
    while True:
        free = int(_scalar(store, "PRAGMA freelist_count") or 0)
        if free == 0:
            return freed
        step = min(free, _VACUUM_PAGES)
        conn.execute(f"PRAGMA incremental_vacuum({step})").fetchall()
        freed += step
        if pause_s:
            time.sleep(pause_s)


def prune(
    store: Store,
    retention: RetentionConfig,
    now: datetime,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    pause_s: float = 0.0,
    vacuum: bool = True,
) -> PruneResult:
    """Run every pruning step; ``pause_s`` sleeps between chunks to let a writer in.

    Use it from a thread that owns ``store`` (its own connection: ``Store.open(path)``),
    e.g. ``await asyncio.to_thread(prune, store, config.retention, now, pause_s=0.01)``.
    """
    result = PruneResult(cutoffs(retention, now))
    for step in prune_steps(store, retention, now, chunk_rows):
        result.deleted[step.table] = result.deleted.get(step.table, 0) + step.rows
        result.chunks += 1
        if pause_s:
            time.sleep(pause_s)
    if vacuum:
        result.vacuumed_pages = _incremental_vacuum(store, pause_s)
    if result.total:
        _checkpoint(store)
        log.info(
            "retention: deleted %s (events before %s, findings before %s)",
            ", ".join(f"{n} {t}" for t, n in sorted(result.deleted.items())),
            _iso(result.cutoffs.events_ms),
            _iso(result.cutoffs.findings_ms),
        )
    return result


def prune_path(
    path: Path | str, retention: RetentionConfig, now: datetime, *, pause_s: float = 0.01
) -> PruneResult:
    """Open the store on its own connection, prune it, close it (for a worker thread).

    ``pause_s`` between chunks lets the daemon's writer take the lock in between.
    """
    store = Store.open(path)
    try:
        return prune(store, retention, now, pause_s=pause_s)
    finally:
        store.close()


def _checkpoint(store: Store) -> None:
    """Move the zeroed pages from the WAL into the database file, without waiting.

    Best effort: a reader or an open statement may hold it back; a later checkpoint (SQLite
    runs one every 1000 pages, and on close) finishes the job.
    """
    try:
        store.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.OperationalError as exc:
        log.debug("retention: checkpoint deferred: %s", exc)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
