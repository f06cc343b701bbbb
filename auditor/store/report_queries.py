"""The SQL behind the PDF report. It reads aggregates only, never the ``events`` table.

Every query is bounded by the period and served by a primary key or index range:
``minute_stats`` per source (PK ``source, minute``), ``client_hours`` by hour, ``exposures``
by day, ``findings`` by ``last_seen_ms``. So a 30-day report costs the same whether the
store holds ten thousand or ten million events.

Findings are those *active* in the period: first seen before its end and last seen at or
after its start, the same selection as ``log-auditor findings --since --until``.
"""

from __future__ import annotations

import heapq
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from auditor.readgap import JOURNAL_KIND as READ_GAP
from auditor.store.meta import client_days_through

MINUTE_MS = 60_000
HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class FindingRow:
    id: str
    rule_id: str
    title: str
    category: str
    severity: int
    client_ip: str | None
    source: str | None
    first_seen_ms: int
    last_seen_ms: int
    count: int
    pii_type: str | None
    evidence: str | None
    controls: tuple[str, ...]
    detected_at_ms: int
    acknowledged_at_ms: int | None
    status: str
    distinct_values: int
    host: str = ""  # set only in a fleet report, where stores from several hosts merge


@dataclass(frozen=True, slots=True)
class SourceRow:
    """``source_counters``: running totals since the store was created."""

    source: str
    path: str | None
    format: str | None
    lines_read: int
    lines_parsed: int
    lines_unparsed: int
    lines_truncated: int
    bytes_read: int
    rotations: int
    first_event_ms: int | None
    last_event_ms: int | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class SourcePeriod:
    """One source's ``minute_stats`` summed over the period."""

    source: str
    requests: int
    status_2xx: int
    status_3xx: int
    status_4xx: int
    status_5xx: int
    auth_failures: int
    plain_http: int
    bytes_out: int
    minutes_with_data: int
    first_minute: int | None
    last_minute: int | None
    gaps: tuple[tuple[int, int], ...]  # (last minute with data, next minute with data)
    # ``gaps`` holds the inner gaps of more than gap_minutes empty minutes, at most 1000.
    store_first_minute: int | None  # oldest minute the store holds for this source


@dataclass(frozen=True, slots=True)
class Bucket:
    index: int  # bucket number from the period start
    requests: int
    auth_failures: int
    status_5xx: int


@dataclass(frozen=True, slots=True)
class ExposureRow:
    pii_type: str
    location: str
    route: str
    param: str
    distinct_values: int
    occurrences: int
    first_ms: int
    last_ms: int


@dataclass(frozen=True, slots=True)
class ClientRow:
    client_ip: str
    requests: int


@dataclass(frozen=True, slots=True)
class JournalRow:
    at_ms: int
    source: str | None
    kind: str
    detail: str | None


@dataclass(frozen=True, slots=True)
class InputRow:
    source: str
    path: str
    file_id: str
    offset: int
    size: int
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class ReportRows:
    """Everything the report needs from the store, for the period and the one before."""

    start_ms: int
    end_ms: int
    bucket_minutes: int
    findings: tuple[FindingRow, ...]
    prev_findings: tuple[FindingRow, ...]
    sources: tuple[SourceRow, ...]
    periods: tuple[SourcePeriod, ...]
    prev_periods: tuple[SourcePeriod, ...]
    buckets: tuple[Bucket, ...]
    exposures: tuple[ExposureRow, ...]
    exposure_distinct: tuple[tuple[str, int], ...]  # distinct values per pii_type
    top_clients: tuple[ClientRow, ...]
    clients_total: int  # distinct clients in the period
    client_requests_total: int
    journal: tuple[JournalRow, ...]
    journal_counts: tuple[tuple[str | None, str, int], ...]  # (source, kind, count)
    read_gaps: tuple[JournalRow, ...]  # found in the period (auditor.readgap), oldest first
    inputs: tuple[InputRow, ...]
    meta: tuple[tuple[str, str], ...]


_FINDING_SQL = (
    "SELECT f.id, rule_id, title, category, severity, client_ip, source, first_seen_ms,"
    " last_seen_ms, count, pii_type, evidence, controls, detected_at_ms, acknowledged_at_ms,"
    " status, (SELECT count(*) FROM finding_digests d WHERE d.finding_id = f.id)"
    " FROM findings f WHERE last_seen_ms >= ? AND first_seen_ms < ?"
    " ORDER BY severity DESC, count DESC, first_seen_ms, f.id"
)


def _controls(text: str | None) -> tuple[str, ...]:
    """The controls JSON array; anything else (bad JSON, non-strings) is dropped."""
    if not text:
        return ()
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return ()
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def _finding(r: tuple[Any, ...]) -> FindingRow:
    return FindingRow(
        id=r[0],
        rule_id=r[1],
        title=r[2],
        category=r[3],
        severity=int(r[4]),
        client_ip=r[5],
        source=r[6],
        first_seen_ms=r[7],
        last_seen_ms=r[8],
        count=r[9],
        pii_type=r[10],
        evidence=r[11],
        controls=_controls(r[12]),
        detected_at_ms=r[13],
        acknowledged_at_ms=r[14],
        status=r[15] or "open",
        distinct_values=r[16],
    )


def findings(conn: sqlite3.Connection, start_ms: int, end_ms: int) -> tuple[FindingRow, ...]:
    return tuple(_finding(r) for r in conn.execute(_FINDING_SQL, (start_ms, end_ms)))


def sources(conn: sqlite3.Connection) -> tuple[SourceRow, ...]:
    rows = conn.execute(
        "SELECT source, path, format, lines_read, lines_parsed, lines_unparsed, lines_truncated,"
        " bytes_read, rotations, first_event_ms, last_event_ms, last_error"
        " FROM source_counters ORDER BY source"
    )
    return tuple(SourceRow(*r) for r in rows)


def _gaps(
    conn: sqlite3.Connection, source: str, m0: int, m1: int, gap_minutes: int
) -> tuple[tuple[int, int], ...]:
    rows = conn.execute(
        "SELECT prev, minute FROM (SELECT minute, LAG(minute) OVER (ORDER BY minute) AS prev"
        " FROM minute_stats WHERE source = ? AND minute >= ? AND minute < ?)"
        " WHERE minute - prev - 1 > ? ORDER BY minute LIMIT 1000",
        (source, m0, m1, gap_minutes),
    )
    return tuple((int(a), int(b)) for a, b in rows)


def source_period(
    conn: sqlite3.Connection, source: str, start_ms: int, end_ms: int, gap_minutes: int
) -> SourcePeriod:
    m0, m1 = start_ms // MINUTE_MS, -(-end_ms // MINUTE_MS)
    r = conn.execute(
        "SELECT coalesce(sum(requests), 0), coalesce(sum(status_2xx), 0),"
        " coalesce(sum(status_3xx), 0), coalesce(sum(status_4xx), 0),"
        " coalesce(sum(status_5xx), 0), coalesce(sum(auth_failures), 0),"
        " coalesce(sum(plain_http), 0), coalesce(sum(bytes_out), 0), count(*),"
        " min(minute), max(minute)"
        " FROM minute_stats WHERE source = ? AND minute >= ? AND minute < ?",
        (source, m0, m1),
    ).fetchone()
    first = conn.execute(
        "SELECT min(minute) FROM minute_stats WHERE source = ?", (source,)
    ).fetchone()[0]
    gaps = _gaps(conn, source, m0, m1, gap_minutes) if r[8] else ()
    return SourcePeriod(
        source=source,
        requests=r[0],
        status_2xx=r[1],
        status_3xx=r[2],
        status_4xx=r[3],
        status_5xx=r[4],
        auth_failures=r[5],
        plain_http=r[6],
        bytes_out=r[7],
        minutes_with_data=r[8],
        first_minute=r[9],
        last_minute=r[10],
        gaps=gaps,
        store_first_minute=first,
    )


def buckets(
    conn: sqlite3.Connection, names: tuple[str, ...], start_ms: int, end_ms: int, minutes: int
) -> tuple[Bucket, ...]:
    """Requests, 401/403 and 5xx per bucket of ``minutes``, summed over the sources."""
    m0, m1 = start_ms // MINUTE_MS, -(-end_ms // MINUTE_MS)
    acc: dict[int, list[int]] = {}
    for name in names:
        rows = conn.execute(
            "SELECT (minute - ?) / ?, sum(requests), sum(auth_failures), sum(status_5xx)"
            " FROM minute_stats WHERE source = ? AND minute >= ? AND minute < ? GROUP BY 1",
            (m0, minutes, name, m0, m1),
        )
        for b, req, auth, err in rows:
            cur = acc.setdefault(int(b), [0, 0, 0])
            cur[0] += req
            cur[1] += auth
            cur[2] += err
    return tuple(Bucket(b, *v) for b, v in sorted(acc.items()))


def exposures(
    conn: sqlite3.Connection, start_ms: int, end_ms: int
) -> tuple[tuple[ExposureRow, ...], tuple[tuple[str, int], ...]]:
    """Exposure rows by type, location, route and parameter; distinct counts by keyed hash.

    ``exposures`` is kept per UTC day; a day row counts when its first/last times overlap
    the period, so a period that cuts a day in two includes that day's row whole.
    """
    d0 = datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y-%m-%d")
    d1 = datetime.fromtimestamp(max(start_ms, end_ms - 1) / 1000, UTC).strftime("%Y-%m-%d")
    where = "day >= ? AND day <= ? AND last_ms >= ? AND first_ms < ?"
    args = (d0, d1, start_ms, end_ms)
    rows = conn.execute(
        "SELECT pii_type, location, route, param, count(DISTINCT digest), sum(count),"
        f" min(first_ms), max(last_ms) FROM exposures WHERE {where}"
        " GROUP BY pii_type, location, route, param ORDER BY 5 DESC, 6 DESC, 1, 3, 4",
        args,
    )
    table = tuple(ExposureRow(*r) for r in rows)
    per_type = conn.execute(
        f"SELECT pii_type, count(DISTINCT digest) FROM exposures WHERE {where}"
        " GROUP BY pii_type ORDER BY 2 DESC, 1",
        args,
    )
    return table, tuple((str(a), int(b)) for a, b in per_type)


Clients = tuple[tuple[ClientRow, ...], int, int]


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether the store has this table or view (a benchmark's store may lack some)."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?", (name,)
    )
    return row.fetchone() is not None


def clients(conn: sqlite3.Connection, start_ms: int, end_ms: int, top_n: int) -> Clients:
    """Top clients by requests, the number of distinct clients and their request total.

    ``client_hours`` is kept per hour (the hours still under way in parts beside it: the
    view ``client_hours_all`` reads both); periods are hour-aligned for scheduled reports.
    This is the report's one query whose cost grows with traffic (distinct clients per
    hour): ``clients_from_file`` runs it on its own connection, beside the others. When
    the store also keeps ``client_days`` (day, client_ip, requests), whole days are read
    from there, about 4 times fewer rows on a busy API.
    """
    h0, h1 = start_ms // HOUR_MS, -(-end_ms // HOUR_MS)
    d0, d1 = -(-h0 // 24), h1 // 24  # the whole days inside the period
    # Days after client_days_through are not rolled up yet: read their hours.
    rolled = (
        max(d0, min(d1, client_days_through(conn) + 1)) if _has_table(conn, "client_days") else d0
    )
    hours = "client_hours_all" if _has_table(conn, "client_hours_all") else "client_hours"
    if d0 < rolled:
        rows = conn.execute(
            "SELECT client_ip, sum(n) FROM ("
            " SELECT client_ip, requests AS n FROM client_days WHERE day >= ? AND day < ?"
            f" UNION ALL SELECT client_ip, requests FROM {hours}"
            " WHERE (hour >= ? AND hour < ?) OR (hour >= ? AND hour < ?)"
            ") GROUP BY client_ip",
            (d0, rolled, h0, d0 * 24, rolled * 24, h1),
        )
    else:
        rows = conn.execute(
            f"SELECT client_ip, sum(requests) FROM {hours} WHERE hour >= ? AND hour < ?"
            " GROUP BY client_ip",
            (h0, h1),
        )
    n = total = 0
    heap: list[tuple[int, str]] = []
    for ip, req in rows:
        n += 1
        total += req
        if len(heap) < top_n:
            heapq.heappush(heap, (req, ip))
        elif req > heap[0][0]:
            heapq.heapreplace(heap, (req, ip))
    top = sorted(heap, key=lambda t: (-t[0], t[1]))
    return tuple(ClientRow(ip, req) for req, ip in top), n, total


def readonly_uri(path: Path) -> str:
    """A URI that opens ``path`` without writing anything, not even beside it.

    ``immutable=1`` when no WAL file with content sits beside it (a copied or closed store):
    SQLite then takes no lock and creates no ``-wal``/``-shm`` file. A non-empty ``-wal``
    means a live writer or a copy taken with its WAL: ``mode=ro`` reads the WAL too (SQLite
    may create the ``-shm`` index beside it, the store file itself is not written).
    """
    p = path.resolve()
    wal = p.with_name(p.name + "-wal")
    live = wal.exists() and wal.stat().st_size > 0
    return p.as_uri() + ("?mode=ro" if live else "?immutable=1")


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection (see ``readonly_uri``); never migrates or writes the store."""
    conn = sqlite3.connect(readonly_uri(path), uri=True, timeout=30)
    conn.execute("PRAGMA query_only = 1")
    return conn


def clients_from_file(path: str, start_ms: int, end_ms: int, top_n: int) -> Clients:
    """``clients`` on a read-only connection of its own (for a worker thread: SQLite
    releases the GIL while it sorts, so the other queries and the layout run meanwhile)."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=30)
    try:
        return clients(conn, start_ms, end_ms, top_n)
    finally:
        conn.close()


def journal(
    conn: sqlite3.Connection, start_ms: int, end_ms: int, limit: int = 200
) -> tuple[tuple[JournalRow, ...], tuple[tuple[str | None, str, int], ...]]:
    """Journal records in the period (wall-clock times), notable kinds first in the list."""
    counts = conn.execute(
        "SELECT source, kind, count(*) FROM journal WHERE at_ms >= ? AND at_ms < ?"
        " GROUP BY source, kind ORDER BY source, kind",
        (start_ms, end_ms),
    )
    rows = conn.execute(
        "SELECT at_ms, source, kind, detail FROM journal WHERE at_ms >= ? AND at_ms < ?"
        " ORDER BY at_ms LIMIT ?",
        (start_ms, end_ms, limit),
    )
    return tuple(JournalRow(*r) for r in rows), tuple((a, str(b), int(c)) for a, b, c in counts)


def read_gaps(
    conn: sqlite3.Connection, start_ms: int, end_ms: int, limit: int = 200
) -> tuple[JournalRow, ...]:
    """Read gaps found in the period (wall-clock times), oldest first. Apart from
    ``journal``: its list is cut at ``limit`` records of every kind, and a gap must not be
    crowded out."""
    rows = conn.execute(
        "SELECT at_ms, source, kind, detail FROM journal WHERE kind = ? AND at_ms >= ?"
        " AND at_ms < ? ORDER BY at_ms, id LIMIT ?",
        (READ_GAP, start_ms, end_ms, limit),
    )
    return tuple(JournalRow(*r) for r in rows)


def inputs(conn: sqlite3.Connection, limit: int = 200) -> tuple[InputRow, ...]:
    rows = conn.execute(
        'SELECT source, path, file_id, "offset", size, updated_at_ms FROM positions'
        " ORDER BY source, path, updated_at_ms LIMIT ?",
        (limit,),
    )
    return tuple(InputRow(*r) for r in rows)


def meta(conn: sqlite3.Connection) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in conn.execute("SELECT key, value FROM meta"))


def fetch(
    conn: sqlite3.Connection,
    start_ms: int,
    end_ms: int,
    *,
    bucket_minutes: int,
    gap_minutes: int = 60,
    top_n: int = 10,
    client_rows: Clients | None = None,
) -> ReportRows:
    """All rows for one report: the period ``[start, end)`` and the equally long one before."""
    prev_start = start_ms - (end_ms - start_ms)
    srcs = sources(conn)
    names = tuple(s.source for s in srcs)
    exp, exp_distinct = exposures(conn, start_ms, end_ms)
    top, n_clients, client_total = client_rows or clients(conn, start_ms, end_ms, top_n)
    jrows, jcounts = journal(conn, start_ms, end_ms)
    return ReportRows(
        start_ms=start_ms,
        end_ms=end_ms,
        bucket_minutes=bucket_minutes,
        findings=findings(conn, start_ms, end_ms),
        prev_findings=findings(conn, prev_start, start_ms),
        sources=srcs,
        periods=tuple(source_period(conn, n, start_ms, end_ms, gap_minutes) for n in names),
        prev_periods=tuple(source_period(conn, n, prev_start, start_ms, 10**9) for n in names),
        buckets=buckets(conn, names, start_ms, end_ms, bucket_minutes),
        exposures=exp,
        exposure_distinct=exp_distinct,
        top_clients=top,
        clients_total=n_clients,
        client_requests_total=client_total,
        journal=jrows,
        journal_counts=jcounts,
        read_gaps=read_gaps(conn, start_ms, end_ms),
        inputs=inputs(conn),
        meta=meta(conn),
    )
