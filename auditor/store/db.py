"""The store: one SQLite file in WAL mode. The only module that writes SQL.

A batch (events, hits folded into findings, file positions, counters, per-minute stats,
detector state, read gaps) commits in ONE transaction, so a crash at any moment leaves
positions and data consistent: nothing lost, nothing doubled on restart.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from auditor.errors import StoreError
from auditor.model import Event, Hit
from auditor.pipeline import Batch, ExposureKey, HourClients, Position, count_exposures
from auditor.readgap import JOURNAL_KIND, ReadGap
from auditor.store.eventblocks import compress_block, serialize_events
from auditor.store.meta import client_days_through

if TYPE_CHECKING:
    from sqlite_utils import Database

# sqlite-utils (with the schema's migrations) is imported by ``Store.open``, not with this
# module: its import made a quarter of a scan's start (~80 ms, a third of that compiling
# one regular expression), and a scan into a new store opens it while its decode workers
# work (``auditor.scanfiles.LazyStore``).

_INSERT_BLOCK = (
    "INSERT INTO event_blocks (source, first_ms, last_ms, n, data) VALUES (?, ?, ?, ?, ?)"
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ms(event: Event) -> int:
    return int(event.timestamp.timestamp() * 1000)


def finding_id(rule_id: str, key: str, first_seen_ms: int) -> str:
    """Stable id: the same rule, key and episode start give the same id on every run."""
    return hashlib.sha256(f"{rule_id}\x1f{key}\x1f{first_seen_ms}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class StoredPosition:
    file_id: str
    source: str
    path: str
    dev: int
    inode: int
    offset: int
    size: int


@dataclass(slots=True)
class _Episode:
    """A finding as folded in memory during one batch (see ``Store._fold_hits``)."""

    fid: str
    first: int
    last: int
    severity: int
    hit: Hit | None = None  # the hit that opened it in this batch; None: already stored
    count: int = 0  # added in this batch
    evidence: str | None = None  # None: keep the stored evidence


def _create_private(path: Path) -> None:
    """Create the database file owner-only before SQLite opens it (its -wal/-shm follow)."""
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)


MERGE_PARTS = 32
"""Client parts of an hour under way merged into one when they reach this many."""


class Store:
    """Owns one SQLite connection; use it from one thread."""

    def __init__(self, db: Database, path: Path | None) -> None:
        self.db = db
        self.path = path
        self.conn: sqlite3.Connection = db.conn
        # Hours whose client parts may want a merge (see _client_hours); None: not read yet.
        self._unmerged: set[int] | None = None

    @staticmethod
    def create(path: Path | str) -> None:
        """Create the store's file (owner-only, and its directory) as ``open`` does first,
        with ``open``'s ``StoreError``; ``open`` creates the tables."""
        p = Path(path)
        try:
            _create_private(p)
        except OSError as exc:
            raise StoreError(f"{p}: cannot open the store: {exc}") from None

    @classmethod
    def open(cls, path: Path | str, *, check_same_thread: bool = True) -> Store:
        """Open (creating and migrating) the store; ``StoreError`` with the reason otherwise."""
        from sqlite_utils import Database

        from auditor.store.schema import migrations

        p = Path(path)
        try:
            _create_private(p)
            conn = sqlite3.connect(str(p), check_same_thread=check_same_thread, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a power loss may drop the last batches, but positions drop
            # with them, so the next start re-reads exactly those lines.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            # No sqlite-utils plugins on the store's connection: nothing installed beside
            # us gets to change it (and start-up skips scanning the installed packages
            # for them, about 35 ms).
            db = Database(conn, execute_plugins=False)
            migrations.apply(db)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{p}: cannot open the store: {exc}") from None
        return cls(db, p)

    @classmethod
    def open_readonly(cls, path: Path | str) -> Store:
        """Open an existing store for queries; a missing file is a clear error."""
        p = Path(path)
        if not p.exists():
            raise StoreError(f"{p}: no such store (run `log-auditor scan` or `run` first)")
        return cls.open(p)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.db.atomic():
            yield

    # -- writing -------------------------------------------------------------------------

    def write(self, batch: Batch) -> None:
        """Commit one batch atomically; ``StoreError`` (nothing written) on failure."""
        try:
            with self.db.atomic():
                self._write(batch)
        except sqlite3.Error as exc:
            self._unmerged = None  # a merge may have been rolled back: read them again
            raise StoreError(f"{self.path}: cannot write to the store: {exc}") from None

    def _write(self, batch: Batch) -> None:
        c = self.conn
        now = _now_ms()
        if batch.events or batch.packed:
            blocks = batch.packed
            exposures = batch.exposures
            if blocks is None or exposures is None:
                times = batch.event_ms
                if len(times) != len(batch.events):
                    times = [_ms(e) for e in batch.events]
                if blocks is None:
                    blocks = serialize_events(batch.events, times)
                if exposures is None:
                    exposures = count_exposures(batch.events, times)
            c.executemany(_INSERT_BLOCK, [compress_block(b) for b in blocks])
            self._write_exposures(exposures)
        if batch.hits:
            self._fold_hits(batch.hits, now)
        for pos in batch.positions:
            self._write_position(pos, now)
        if batch.read_gaps:
            self._journal_read_gaps(batch.read_gaps)
        for source, cnt in batch.counters.items():
            c.execute(
                "INSERT INTO source_counters (source, lines_read, lines_parsed, lines_unparsed,"
                " lines_truncated, bytes_read, rotations, first_event_ms, last_event_ms,"
                " last_unparsed, updated_at_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(source) DO UPDATE SET"
                " lines_read = lines_read + excluded.lines_read,"
                " lines_parsed = lines_parsed + excluded.lines_parsed,"
                " lines_unparsed = lines_unparsed + excluded.lines_unparsed,"
                " lines_truncated = lines_truncated + excluded.lines_truncated,"
                " bytes_read = bytes_read + excluded.bytes_read,"
                " rotations = rotations + excluded.rotations,"
                " first_event_ms = min(coalesce(first_event_ms, excluded.first_event_ms),"
                "   coalesce(excluded.first_event_ms, first_event_ms)),"
                " last_event_ms = max(coalesce(last_event_ms, excluded.last_event_ms),"
                "   coalesce(excluded.last_event_ms, last_event_ms)),"
                " last_unparsed = coalesce(excluded.last_unparsed, last_unparsed),"
                " updated_at_ms = excluded.updated_at_ms",
                (
                    source,
                    cnt.lines_read,
                    cnt.lines_parsed,
                    cnt.lines_unparsed,
                    cnt.lines_truncated,
                    cnt.bytes_read,
                    cnt.rotations,
                    cnt.first_event_ms,
                    cnt.last_event_ms,
                    cnt.last_unparsed,
                    now,
                ),
            )
        if batch.minutes:
            c.executemany(
                "INSERT INTO minute_stats VALUES (?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(source, minute) DO UPDATE SET"
                " requests = requests + excluded.requests,"
                " status_2xx = status_2xx + excluded.status_2xx,"
                " status_3xx = status_3xx + excluded.status_3xx,"
                " status_4xx = status_4xx + excluded.status_4xx,"
                " status_5xx = status_5xx + excluded.status_5xx,"
                " auth_failures = auth_failures + excluded.auth_failures,"
                " plain_http = plain_http + excluded.plain_http,"
                " bytes_out = bytes_out + excluded.bytes_out",
                [
                    (
                        s,
                        minute,
                        m.requests,
                        m.status_2xx,
                        m.status_3xx,
                        m.status_4xx,
                        m.status_5xx,
                        m.auth_failures,
                        m.plain_http,
                        m.bytes_out,
                    )
                    for (s, minute), m in batch.minutes.items()
                ],
            )
        if batch.client_hours:
            self._client_hours(batch.client_hours)
        if batch.detector_state is not None:
            c.execute(
                "INSERT INTO detector_state (id, blob, updated_at_ms) VALUES (1, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET blob = excluded.blob,"
                " updated_at_ms = excluded.updated_at_ms",
                (batch.detector_state, now),
            )

    def _client_hours(self, parts: list[HourClients]) -> None:
        """Add requests per client and hour: each part as a row of ``client_hour_parts``
        (its clients as one JSON object); then merge the parts of each hour the log has
        left behind (before the log's hour but one) into one, and those of an hour under way
        once it has ``MERGE_PARTS`` (a daemon writes a batch every second or so: its
        parts stay few, and no bigger on disk than the hour's clients, give or take).

        A row per client and batch upserted into ``client_hours`` cost about 5 us per
        client and batch (in the million-line bench, 440,000 of them: 2.3 s of the
        store's CPU); folding the parts into such rows in SQL, once per client and hour,
        still cost 2 us per client. A merge in Python is a dict update per client.
        """
        c = self.conn
        c.executemany(
            "INSERT INTO client_hour_parts (hour, counts) VALUES (?, ?)",
            [(h, orjson.dumps(clients).decode()) for h, clients in parts],
        )
        unmerged = self._unmerged
        if unmerged is None:
            unmerged = self._unmerged = {
                h
                for (h,) in c.execute(
                    "SELECT hour FROM client_hour_parts GROUP BY hour HAVING count(*) > 1"
                )
            }
        # The log's hour is where most of the batch's clients are (a line from the far
        # future must not close the hour under way: its parts would be merged with every
        # batch). Lines come in time order, give or take: the hour before stays open.
        weight: dict[int, int] = {}
        for h, clients in parts:
            weight[h] = weight.get(h, 0) + len(clients)
        closed = max(weight, key=lambda h: (weight[h], h)) - 1
        unmerged.update(weight)
        hours = sorted(unmerged)
        # A range, not a list of hours (a batch of wild times could pass SQLite's limit on
        # parameters); the parts of other hours in it are one per hour.
        counts = dict(
            c.execute(
                "SELECT hour, count(*) FROM client_hour_parts"
                " WHERE hour >= ? AND hour <= ? GROUP BY hour",
                (hours[0], hours[-1]),
            ).fetchall()
        )
        for h in hours:
            n = counts.get(h, 0)
            if n > 1 and (h < closed or n >= MERGE_PARTS):
                self.merge_client_hour(h)
                n = 1
            if h < closed or n == 1:
                unmerged.discard(h)  # a later part of it adds it again
        self._client_days(parts)

    def merge_client_hour(self, hour: int) -> None:
        """Merge the parts of ``hour`` into one (in the caller's transaction)."""
        c = self.conn
        rows = c.execute(
            "SELECT id, counts FROM client_hour_parts WHERE hour = ? ORDER BY length(counts) DESC",
            (hour,),
        ).fetchall()
        total: dict[str, int] = orjson.loads(rows[0][1])  # the biggest, as it is
        get = total.get
        for _, counts in rows[1:]:
            for ip, n in orjson.loads(counts).items():
                total[ip] = get(ip, 0) + n
        c.executemany("DELETE FROM client_hour_parts WHERE id = ?", [(r[0],) for r in rows])
        c.execute(
            "INSERT INTO client_hour_parts (hour, counts) VALUES (?, ?)",
            (hour, orjson.dumps(total).decode()),
        )

    def _client_days(self, parts: list[HourClients]) -> None:
        """Keep ``client_days`` = the sum of ``client_hours_all`` over every day up to the
        day in meta ``client_days_through``; later days are in ``client_hours_all`` only.

        A day is rolled up once the log has moved on to the next one: its rows are then
        appended in key order, once. Adding each batch's clients instead touched pages all
        over the current day's rows, and every page touched is written again at commit
        (about 6 us per line on a busy day). Clients of days already rolled up (a late
        source, an older file scanned after a newer one) go to both tables.
        """
        c = self.conn
        through = self.client_days_through()
        late: dict[tuple[int, str], int] = {}
        newest = through
        for h, clients in parts:
            day = h // 24
            if day <= through:
                for ip, n in clients.items():
                    k = (day, ip)
                    late[k] = late.get(k, 0) + n
            elif day > newest:
                newest = day
        if late:
            c.executemany(
                "INSERT INTO client_days (day, client_ip, requests) VALUES (?,?,?)"
                " ON CONFLICT(day, client_ip) DO UPDATE SET requests = requests + excluded.requests",
                [(d, ip, n) for (d, ip), n in late.items()],
            )
        if newest - 1 > through:
            self.roll_client_days(newest - 1)

    def client_days_through(self) -> int:
        """The last day (epoch days) whose clients are in ``client_days``; -1: none."""
        return client_days_through(self.conn)

    def roll_client_days(self, upto_day: int) -> None:
        """Move the days after ``client_days_through`` up to ``upto_day`` into
        ``client_days`` (in the caller's transaction)."""
        through = self.client_days_through()
        if upto_day <= through:
            return
        self.conn.execute(
            "INSERT INTO client_days (day, client_ip, requests)"
            " SELECT hour / 24, client_ip, sum(requests) FROM client_hours_all"
            " WHERE hour >= ? AND hour < ? GROUP BY 1, 2 ORDER BY 1, 2"
            " ON CONFLICT(day, client_ip) DO UPDATE SET requests = requests + excluded.requests",
            ((through + 1) * 24, (upto_day + 1) * 24),
        )
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('client_days_through', ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(upto_day),),
        )

    def _write_exposures(self, agg: dict[ExposureKey, list[int]]) -> None:
        if agg:
            self.conn.executemany(
                "INSERT INTO exposures VALUES (?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT DO UPDATE SET count = count + excluded.count,"
                " first_ms = min(first_ms, excluded.first_ms),"
                " last_ms = max(last_ms, excluded.last_ms)",
                [(*k, v[0], v[1], v[2]) for k, v in agg.items()],
            )

    def _fold_hits(self, hits: list[Hit], now: int) -> None:
        """One finding per (rule, key, episode): extend the open episode or start a new one.

        A batch holds many hits for few (rule, key) pairs, so the episodes are folded here
        first: one lookup and one write per episode touched, not two statements per hit.
        """
        c = self.conn
        latest: dict[tuple[str, str], _Episode | None] = {}
        touched: list[_Episode] = []
        digests: list[tuple[str, str]] = []
        for h in hits:
            first = int(h.first_seen.timestamp() * 1000)
            last = int(h.timestamp.timestamp() * 1000)
            k = (h.rule_id, h.key)
            if k in latest:
                ep = latest[k]
            else:
                row = c.execute(
                    "SELECT id, first_seen_ms, last_seen_ms, severity FROM findings"
                    " WHERE rule_id = ? AND key = ? ORDER BY last_seen_ms DESC LIMIT 1",
                    (h.rule_id, h.key),
                ).fetchone()
                ep = latest[k] = None if row is None else _Episode(row[0], row[1], row[2], row[3])
            if ep is not None and ep.last >= first - h.episode_gap_s * 1000:
                if ep.hit is None and not ep.count:
                    touched.append(ep)
                ep.count += h.count
                ep.first = min(ep.first, first)
                ep.last = max(ep.last, last)
                if int(h.severity) > ep.severity:
                    ep.severity = int(h.severity)
                    ep.evidence = h.evidence
            else:
                ep = latest[k] = _Episode(
                    finding_id(h.rule_id, h.key, first), first, last, int(h.severity), h
                )
                ep.count = h.count
                ep.evidence = h.evidence
                touched.append(ep)
            if h.digest is not None:
                digests.append((ep.fid, h.digest))
        for ep in touched:
            h0 = ep.hit
            if h0 is None:
                c.execute(
                    "UPDATE findings SET count = count + ?,"
                    " first_seen_ms = min(first_seen_ms, ?), last_seen_ms = max(last_seen_ms, ?),"
                    " severity = max(severity, ?), evidence = coalesce(?, evidence)"
                    " WHERE id = ?",
                    (ep.count, ep.first, ep.last, ep.severity, ep.evidence, ep.fid),
                )
                continue
            c.execute(
                "INSERT OR IGNORE INTO findings (id, rule_id, title, category, severity, key,"
                " client_ip, source, first_seen_ms, last_seen_ms, count, pii_type, evidence,"
                " controls, episode_gap_s, detected_at_ms)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    ep.fid,
                    h0.rule_id,
                    h0.title,
                    h0.category,
                    ep.severity,
                    h0.key,
                    h0.client_ip,
                    h0.source,
                    ep.first,
                    ep.last,
                    ep.count,
                    h0.pii_type,
                    ep.evidence,
                    orjson.dumps(list(h0.controls)).decode(),
                    h0.episode_gap_s,
                    now,
                ),
            )
        if digests:
            c.executemany(
                "INSERT OR IGNORE INTO finding_digests (finding_id, digest) VALUES (?, ?)",
                digests,
            )

    def _write_position(self, pos: Position, now: int) -> None:
        self.conn.execute(
            'INSERT INTO positions (file_id, source, path, dev, inode, "offset", size,'
            " updated_at_ms) VALUES (?,?,?,?,?,?,?,?)"
            " ON CONFLICT(file_id) DO UPDATE SET source = excluded.source,"
            " path = excluded.path, dev = excluded.dev, inode = excluded.inode,"
            ' "offset" = max("offset", excluded."offset"), size = excluded.size,'
            " updated_at_ms = excluded.updated_at_ms",
            (pos.file_id, pos.source, pos.path, pos.dev, pos.inode, pos.offset, pos.size, now),
        )

    def _journal_read_gaps(self, gaps: list[ReadGap]) -> None:
        """Journal read gaps (kind ``read-gap``), each once: one found again after a
        restart (its position not committed yet, or an unfinished archive met again) has
        the same ``ref`` and is left out."""
        self.conn.executemany(
            "INSERT INTO journal (at_ms, source, kind, detail, ref) VALUES (?,?,?,?,?)"
            " ON CONFLICT (kind, source, ref) WHERE ref IS NOT NULL DO NOTHING",
            [(g.at_ms, g.source, JOURNAL_KIND, g.describe(), g.ref) for g in gaps],
        )

    def register_source(self, name: str, path: str, fmt: str) -> None:
        """Record a configured source (so `status` lists it before its first line)."""
        with self.db.atomic():
            self.conn.execute(
                "INSERT INTO source_counters (source, path, format, updated_at_ms)"
                " VALUES (?,?,?,?) ON CONFLICT(source) DO UPDATE SET path = excluded.path,"
                " format = excluded.format",
                (name, path, fmt, _now_ms()),
            )

    def source_seen_ms(self, name: str) -> int | None:
        """When a source was last active (newest position or counters), None if never seen.

        The daemon calls this before ``register_source``: None means a first start (the
        source's ``start`` setting applies); otherwise files rotated since then are owed.
        """
        row = self.conn.execute(
            "SELECT updated_at_ms FROM source_counters WHERE source = ?", (name,)
        ).fetchone()
        if row is None:
            return None
        pos = self.conn.execute(
            "SELECT max(updated_at_ms) FROM positions WHERE source = ?", (name,)
        ).fetchone()
        return max(int(row[0] or 0), int(pos[0] or 0))

    def set_source_error(self, name: str, error: str | None) -> None:
        with self.db.atomic():
            self.conn.execute(
                "UPDATE source_counters SET last_error = ?, updated_at_ms = ? WHERE source = ?",
                (error, _now_ms(), name),
            )

    def journal(self, kind: str, source: str | None = None, detail: str | None = None) -> None:
        """Append an operational record (start, stop, rotation, resume, error)."""
        with self.db.atomic():
            self.conn.execute(
                "INSERT INTO journal (at_ms, source, kind, detail) VALUES (?,?,?,?)",
                (_now_ms(), source, kind, detail),
            )

    # -- reading positions and state -----------------------------------------------------

    def position(self, file_id: str) -> StoredPosition | None:
        row = self.conn.execute(
            'SELECT file_id, source, path, dev, inode, "offset", size FROM positions'
            " WHERE file_id = ?",
            (file_id,),
        ).fetchone()
        return StoredPosition(*row) if row else None

    def positions(self, source: str | None = None) -> list[StoredPosition]:
        sql = 'SELECT file_id, source, path, dev, inode, "offset", size FROM positions'
        args: tuple[object, ...] = ()
        if source is not None:
            sql += " WHERE source = ?"
            args = (source,)
        return [StoredPosition(*r) for r in self.conn.execute(sql, args)]

    def detector_state(self) -> bytes | None:
        row = self.conn.execute("SELECT blob FROM detector_state WHERE id = 1").fetchone()
        return bytes(row[0]) if row else None

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.db.atomic():
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
