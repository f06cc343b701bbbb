"""Read queries behind `events`, `findings` and `status`."""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from auditor.store.db import Store
from auditor.store.eventblocks import block_dicts


def iter_events(
    store: Store,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    source: str | None = None,
    client_ip: str | None = None,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Stored events in time order, read from the blocks that overlap the period."""
    where: list[str] = ["1=1"]
    args: list[object] = []
    if since_ms is not None:
        where.append("last_ms >= ?")
        args.append(since_ms)
    if until_ms is not None:
        where.append("first_ms < ?")
        args.append(until_ms)
    if source is not None:
        where.append("source = ?")
        args.append(source)
    sql = f"SELECT id, first_ms, last_ms, data FROM event_blocks WHERE {' AND '.join(where)}"
    # Blocks of different sources overlap in time: merge them lazily, holding only the
    # blocks whose span has started, so memory stays bounded by the overlap.
    blocks = store.conn.execute(sql + " ORDER BY first_ms, id", args)
    pending: list[tuple[int, int, dict[str, Any]]] = []  # heap of (ts_ms, id, event)
    emitted = 0

    def wanted(d: dict[str, Any]) -> bool:
        ts = d["ts_ms"]
        return (
            (since_ms is None or ts >= since_ms)
            and (until_ms is None or ts < until_ms)
            and (client_ip is None or d["client_ip"] == client_ip)
        )

    for block_id, first_ms, _last_ms, data in blocks:
        while pending and pending[0][0] < first_ms:
            yield heapq.heappop(pending)[2]
            emitted += 1
            if limit is not None and emitted >= limit:
                return
        for d in block_dicts(block_id, data):
            if wanted(d):
                heapq.heappush(pending, (d["ts_ms"], d["id"], d))
    while pending:
        yield heapq.heappop(pending)[2]
        emitted += 1
        if limit is not None and emitted >= limit:
            return


def count_events(store: Store) -> int:
    return int(store.conn.execute("SELECT coalesce(sum(n), 0) FROM event_blocks").fetchall()[0][0])


FINDING_COLUMNS = (
    "id",
    "rule_id",
    "title",
    "category",
    "severity",
    "key",
    "client_ip",
    "source",
    "first_seen_ms",
    "last_seen_ms",
    "count",
    "pii_type",
    "evidence",
    "controls",
    "status",
    "distinct_values",
)
# The rowid first (outputs keep a cursor on it), then FINDING_COLUMNS.
FINDING_SELECT = (
    "SELECT f.rowid, f.id, rule_id, title, category, severity, key, client_ip, source,"
    " first_seen_ms, last_seen_ms, count, pii_type, evidence, controls, status,"
    " (SELECT count(*) FROM finding_digests d WHERE d.finding_id = f.id)"
    " FROM findings f"
)


def finding_row(values: Sequence[Any]) -> dict[str, Any]:
    """One finding (``FINDING_COLUMNS`` values) as a dict, its controls decoded."""
    d = dict(zip(FINDING_COLUMNS, values, strict=True))
    d["controls"] = orjson.loads(d["controls"])
    return d


def iter_findings(
    store: Store,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    category: str | None = None,
    min_severity: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Findings overlapping [since, until), newest activity last."""
    where: list[str] = ["1=1"]
    args: list[object] = []
    if since_ms is not None:
        where.append("last_seen_ms >= ?")
        args.append(since_ms)
    if until_ms is not None:
        where.append("first_seen_ms < ?")
        args.append(until_ms)
    if category is not None:
        where.append("category = ?")
        args.append(category)
    if min_severity is not None:
        where.append("severity >= ?")
        args.append(min_severity)
    sql = f"{FINDING_SELECT} WHERE {' AND '.join(where)} ORDER BY first_seen_ms, f.id"
    for row in store.conn.execute(sql, args):
        yield finding_row(row[1:])


def source_status(store: Store) -> list[dict[str, Any]]:
    rows = store.conn.execute(
        "SELECT source, path, format, lines_read, lines_parsed, lines_unparsed, lines_truncated,"
        " bytes_read, rotations, first_event_ms, last_event_ms, last_unparsed, last_error"
        " FROM source_counters ORDER BY source"
    ).fetchall()
    lag = dict(
        store.conn.execute(
            'SELECT source, sum(max(size - "offset", 0)) FROM positions GROUP BY source'
        ).fetchall()
    )
    names = (
        "name",
        "path",
        "format",
        "lines_read",
        "lines_parsed",
        "lines_unparsed",
        "lines_truncated",
        "bytes_read",
        "rotations",
        "first_event_ms",
        "last_event_ms",
        "last_unparsed",
        "last_error",
    )
    out = []
    for r in rows:
        d = dict(zip(names, r, strict=True))
        d["lag_bytes"] = lag.get(d["name"], 0) or 0
        out.append(d)
    return out


def totals(store: Store) -> dict[str, int]:
    c = store.conn
    return {
        "events": count_events(store),
        "findings": c.execute("SELECT count(*) FROM findings").fetchone()[0],
    }


def recent_journal(store: Store, kind: str, limit: int = 20) -> list[dict[str, Any]]:
    rows = store.conn.execute(
        "SELECT at_ms, source, kind, detail FROM journal WHERE kind = ? ORDER BY id DESC LIMIT ?",
        (kind, limit),
    ).fetchall()
    return [dict(zip(("at_ms", "source", "kind", "detail"), r, strict=True)) for r in rows]
