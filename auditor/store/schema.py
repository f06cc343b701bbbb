"""The SQLite schema, created and migrated with sqlite-utils ``Migrations``.

Times are integer milliseconds since the epoch (UTC), from the log's own clock, except the
``*_at_ms`` wall-clock columns. Only redacted text is ever stored.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from auditor.store.eventblocks import BLOCK_MAX, EVENT_COLUMNS, pack_block

migrations = Migrations("log-auditor")


def _script(db: Database, sql: str) -> None:
    """``db.executescript(sql)``, the same statements run the same way, found faster.

    Inside a migration's transaction sqlite-utils runs a script statement by statement,
    found by trying ``sqlite3.complete_statement`` on the text up to every character: a
    fresh store spent 20-40 ms of every first scan's start in m001. A statement ends at a
    ``;``, so only the text up to each ``;`` is tried here.
    """
    if not db.conn.in_transaction:
        db.executescript(sql)
        return
    cursor = db.conn.cursor()
    pieces = sql.split(";")
    last = len(pieces) - 1
    pending = ""
    for i, piece in enumerate(pieces):
        pending += piece if i == last else piece + ";"
        statement = pending.strip()
        if statement and sqlite3.complete_statement(statement):
            cursor.execute(statement)
            pending = ""
    statement = pending.strip()
    if statement:
        cursor.execute(statement)


# The events table of m001 is superseded by event_blocks (m003); its columns live on in
# auditor.store.eventblocks.EVENT_COLUMNS, the order of a stored row.


@migrations()
def m001_initial(db: Database) -> None:
    _script(
        db,
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            ts_ms INTEGER NOT NULL,
            source TEXT NOT NULL,
            format TEXT,
            client_ip TEXT,
            client_port INTEGER,
            method TEXT,
            scheme TEXT,
            host TEXT,
            server_port INTEGER,
            path TEXT,
            route TEXT,
            query TEXT,
            http_version TEXT,
            status INTEGER,
            bytes_in INTEGER,
            bytes_out INTEGER,
            duration_ms REAL,
            user_name TEXT,
            user_agent TEXT,
            referrer TEXT,
            tls_version TEXT,
            request_id TEXT,
            forwarded_for TEXT,
            file TEXT,
            "offset" INTEGER,
            exposures TEXT
        );
        CREATE INDEX events_ts ON events (ts_ms);

        CREATE TABLE findings (
            id TEXT PRIMARY KEY,
            rule_id TEXT NOT NULL,
            title TEXT NOT NULL,
            category TEXT NOT NULL,
            severity INTEGER NOT NULL,
            key TEXT NOT NULL,
            client_ip TEXT,
            source TEXT,
            first_seen_ms INTEGER NOT NULL,
            last_seen_ms INTEGER NOT NULL,
            count INTEGER NOT NULL,
            pii_type TEXT,
            evidence TEXT,
            controls TEXT NOT NULL,
            episode_gap_s INTEGER NOT NULL,
            detected_at_ms INTEGER NOT NULL,
            acknowledged_at_ms INTEGER,
            status TEXT NOT NULL DEFAULT 'open'
        );
        CREATE INDEX findings_rule_key ON findings (rule_id, key, last_seen_ms);
        CREATE INDEX findings_last_seen ON findings (last_seen_ms);

        -- Distinct leaked values per finding, as keyed hashes only.
        CREATE TABLE finding_digests (
            finding_id TEXT NOT NULL,
            digest TEXT NOT NULL,
            PRIMARY KEY (finding_id, digest)
        ) WITHOUT ROWID;

        -- PII exposure by day, type, route and parameter: the report never reads events.
        CREATE TABLE exposures (
            day TEXT NOT NULL,
            source TEXT NOT NULL,
            pii_type TEXT NOT NULL,
            location TEXT NOT NULL,
            route TEXT NOT NULL,
            param TEXT NOT NULL,
            digest TEXT NOT NULL,
            count INTEGER NOT NULL,
            first_ms INTEGER NOT NULL,
            last_ms INTEGER NOT NULL,
            PRIMARY KEY (day, source, pii_type, location, route, param, digest)
        ) WITHOUT ROWID;

        -- Where reading of each file stopped; committed with the events it covers.
        CREATE TABLE positions (
            file_id TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            path TEXT NOT NULL,
            dev INTEGER NOT NULL,
            inode INTEGER NOT NULL,
            "offset" INTEGER NOT NULL,
            size INTEGER NOT NULL,
            updated_at_ms INTEGER NOT NULL
        );
        CREATE INDEX positions_inode ON positions (dev, inode);

        CREATE TABLE source_counters (
            source TEXT PRIMARY KEY,
            path TEXT,
            format TEXT,
            lines_read INTEGER NOT NULL DEFAULT 0,
            lines_parsed INTEGER NOT NULL DEFAULT 0,
            lines_unparsed INTEGER NOT NULL DEFAULT 0,
            lines_truncated INTEGER NOT NULL DEFAULT 0,
            bytes_read INTEGER NOT NULL DEFAULT 0,
            rotations INTEGER NOT NULL DEFAULT 0,
            first_event_ms INTEGER,
            last_event_ms INTEGER,
            last_unparsed TEXT,
            last_error TEXT,
            updated_at_ms INTEGER
        );

        -- Per source and minute (epoch minutes): what reports and charts read.
        CREATE TABLE minute_stats (
            source TEXT NOT NULL,
            minute INTEGER NOT NULL,
            requests INTEGER NOT NULL,
            status_2xx INTEGER NOT NULL,
            status_3xx INTEGER NOT NULL,
            status_4xx INTEGER NOT NULL,
            status_5xx INTEGER NOT NULL,
            auth_failures INTEGER NOT NULL,
            plain_http INTEGER NOT NULL,
            bytes_out INTEGER NOT NULL,
            PRIMARY KEY (source, minute)
        ) WITHOUT ROWID;

        -- Requests per client and hour (epoch hours), for top clients.
        CREATE TABLE client_hours (
            client_ip TEXT NOT NULL,
            hour INTEGER NOT NULL,
            requests INTEGER NOT NULL,
            PRIMARY KEY (hour, client_ip)
        ) WITHOUT ROWID;

        CREATE TABLE detector_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            blob BLOB NOT NULL,
            updated_at_ms INTEGER NOT NULL
        );

        -- Operational record: runs, rotations, resumes, errors (data completeness evidence).
        CREATE TABLE journal (
            id INTEGER PRIMARY KEY,
            at_ms INTEGER NOT NULL,
            source TEXT,
            kind TEXT NOT NULL,
            detail TEXT
        );
        CREATE INDEX journal_at ON journal (at_ms);

        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """,
    )


@migrations()
def m002_client_days(db: Database) -> None:
    """Requests per client and day (epoch days): top clients over a month read ~24x fewer rows."""
    _script(
        db,
        """
        CREATE TABLE client_days (
            day INTEGER NOT NULL,
            client_ip TEXT NOT NULL,
            requests INTEGER NOT NULL,
            PRIMARY KEY (day, client_ip)
        ) WITHOUT ROWID;
        INSERT INTO client_days (day, client_ip, requests)
            SELECT hour / 24, client_ip, sum(requests) FROM client_hours GROUP BY 1, 2;
        """,
    )


@migrations()
def m003_event_blocks(db: Database) -> None:
    """Events in compressed blocks (see auditor.store.eventblocks); existing rows move over."""
    _script(
        db,
        """
        CREATE TABLE event_blocks (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            first_ms INTEGER NOT NULL,
            last_ms INTEGER NOT NULL,
            n INTEGER NOT NULL,
            data BLOB NOT NULL
        );
        CREATE INDEX event_blocks_first ON event_blocks (first_ms);
        CREATE INDEX event_blocks_last ON event_blocks (last_ms);
        """,
    )
    cols = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
    rows: list[list[Any]] = []
    last_source: object = None

    def flush() -> None:
        if rows:
            db.execute(
                "INSERT INTO event_blocks (source, first_ms, last_ms, n, data) VALUES (?,?,?,?,?)",
                pack_block(str(rows[0][1]), rows),
            )
            rows.clear()

    for row in db.execute(f"SELECT {cols} FROM events ORDER BY source, ts_ms, id"):
        r = list(row)
        r[-1] = orjson.loads(r[-1]) if r[-1] else None  # exposures: JSON text -> nested
        if row[1] != last_source or len(rows) >= BLOCK_MAX:
            flush()
            last_source = row[1]
        rows.append(r)
    flush()
    db.execute("DROP TABLE events")


@migrations()
def m004_output_cursor(db: Database) -> None:
    """Per output: the last finding dealt with (auditor.store.outputs) and lasting totals."""
    _script(
        db,
        """
        CREATE TABLE output_cursor (
            name TEXT PRIMARY KEY,
            last_rowid INTEGER NOT NULL,
            delivered INTEGER NOT NULL DEFAULT 0,
            dropped INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            pending INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            last_delivered_at_ms INTEGER,
            created_at_ms INTEGER NOT NULL,
            updated_at_ms INTEGER NOT NULL
        );
        """,
    )


@migrations()
def m005_output_cursor_follows_deletes(db: Database) -> None:
    """When the newest findings are deleted (retention), SQLite reuses their rowids: lower
    the output cursors to the newest finding left, in the deleting transaction, so a
    later finding with a reused rowid is still delivered (auditor.store.outputs)."""
    _script(
        db,
        """
        CREATE TRIGGER output_cursor_after_finding_delete AFTER DELETE ON findings
        WHEN old.rowid > (SELECT coalesce(max(rowid), 0) FROM findings)
        BEGIN
            UPDATE output_cursor
            SET last_rowid = (SELECT coalesce(max(rowid), 0) FROM findings)
            WHERE last_rowid > (SELECT coalesce(max(rowid), 0) FROM findings);
        END;
        """,
    )


@migrations()
def m006_client_days_through(db: Database) -> None:
    """``client_days`` is now rolled up a whole day at a time (``Store._client_days``); the
    days it holds so far are complete, so they all count as rolled up."""
    if not db["client_days"].exists():  # only a benchmark's store goes without it
        return
    _script(
        db,
        """
        INSERT OR REPLACE INTO meta (key, value)
            SELECT 'client_days_through', max(day) FROM client_days HAVING count(*) > 0;
        """,
    )


@migrations()
def m007_client_hour_parts(db: Database) -> None:
    """Requests per client and hour as JSON objects ``{ip: requests}``: a row per hour of
    each batch written, merged into one per hour once the log has moved on, or once an
    hour under way has ``MERGE_PARTS`` of them (``Store._client_hours``). A row per client
    and batch upserted into ``client_hours`` cost the store about 5 us per client; that
    table keeps the hours written before, and the view ``client_hours_all`` reads both."""
    _script(
        db,
        """
        CREATE TABLE client_hour_parts (
            id INTEGER PRIMARY KEY,
            hour INTEGER NOT NULL,
            counts TEXT NOT NULL
        );
        CREATE INDEX client_hour_parts_hour ON client_hour_parts (hour);
        CREATE VIEW client_hours_all (hour, client_ip, requests) AS
            SELECT hour, client_ip, requests FROM client_hours
            UNION ALL
            SELECT p.hour, j.key, j.value FROM client_hour_parts p, json_each(p.counts) j;
        """,
    )


@migrations()
def m008_journal_ref(db: Database) -> None:
    """A journal record may name what it is about (``ref``); of records of one kind and
    source about the same thing, the first is kept. A read gap (auditor.readgap) found
    again after a restart, the same unfinished archive closed again, is recorded once."""
    _script(
        db,
        """
        ALTER TABLE journal ADD COLUMN ref TEXT;
        CREATE UNIQUE INDEX journal_ref ON journal (kind, source, ref) WHERE ref IS NOT NULL;
        """,
    )
