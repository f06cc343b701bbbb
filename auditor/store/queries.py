"""Read queries behind `events`, `findings` and `status`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from auditor.store.db import Store
from auditor.store.schema import EVENT_COLUMNS


def iter_events(
    store: Store,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    source: str | None = None,
    client_ip: str | None = None,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    where: list[str] = ["1=1"]
    args: list[object] = []
    if since_ms is not None:
        where.append("ts_ms >= ?")
        args.append(since_ms)
    if until_ms is not None:
        where.append("ts_ms < ?")
        args.append(until_ms)
    if source is not None:
        where.append("source = ?")
        args.append(source)
    if client_ip is not None:
        where.append("client_ip = ?")
        args.append(client_ip)
    cols = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
    sql = f"SELECT id, {cols} FROM events WHERE {' AND '.join(where)} ORDER BY ts_ms, id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    names = ("id", *EVENT_COLUMNS)
    for row in store.conn.execute(sql, args):
        d = dict(zip(names, row, strict=True))
        d["exposures"] = orjson.loads(d["exposures"]) if d["exposures"] else []
        yield d


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
    sql = (
        "SELECT f.id, rule_id, title, category, severity, key, client_ip, source, first_seen_ms,"
        " last_seen_ms, count, pii_type, evidence, controls, status,"
        " (SELECT count(*) FROM finding_digests d WHERE d.finding_id = f.id)"
        f" FROM findings f WHERE {' AND '.join(where)} ORDER BY first_seen_ms, f.id"
    )
    names = (
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
    for row in store.conn.execute(sql, args):
        d = dict(zip(names, row, strict=True))
        d["controls"] = orjson.loads(d["controls"])
        yield d


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
        "events": c.execute("SELECT count(*) FROM events").fetchone()[0],
        "findings": c.execute("SELECT count(*) FROM findings").fetchone()[0],
    }


def recent_journal(store: Store, kind: str, limit: int = 20) -> list[dict[str, Any]]:
    rows = store.conn.execute(
        "SELECT at_ms, source, kind, detail FROM journal WHERE kind = ? ORDER BY id DESC LIMIT ?",
        (kind, limit),
    ).fetchall()
    return [dict(zip(("at_ms", "source", "kind", "detail"), r, strict=True)) for r in rows]
