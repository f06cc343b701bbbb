"""Delivery cursors of the outputs: the store is their on-disk queue.

Each output keeps the rowid of the last finding it has dealt with (``output_cursor``,
migration m004; m005 lowers it when retention deletes the newest findings, whose rowids
SQLite then reuses). A finding is pending for an output while its rowid is above the cursor
and it passes the output's filter. The cursor moves in the transaction that records the
delivery, so a restart resends nothing that was recorded and skips nothing that was not.

Findings are delivered once, when they first appear: later count updates of the same
finding (its episode goes on) move no cursor back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from auditor.store.db import Store
from auditor.store.queries import FINDING_SELECT, finding_row

JOURNAL_DROPPED = "output-dropped"


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which findings an output takes: at least this severity, in these categories."""

    min_severity: int = 1
    categories: tuple[str, ...] = ()  # empty: all

    def where(self) -> tuple[str, list[object]]:
        sql = "severity >= ?"
        args: list[object] = [self.min_severity]
        if self.categories:
            sql += f" AND category IN ({', '.join('?' * len(self.categories))})"
            args.extend(self.categories)
        return sql, args


@dataclass(frozen=True, slots=True)
class Cursor:
    name: str
    last_rowid: int
    delivered: int = 0
    dropped: int = 0
    failed: int = 0
    pending: int = 0
    last_error: str | None = None
    last_delivered_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    """Findings to send now, read in one snapshot with the newest rowid at that moment."""

    rows: list[tuple[int, dict[str, Any]]]  # (rowid, the row as iter_findings yields it)
    last_rowid: int  # the cursor they were read after
    top_rowid: int  # every finding up to here is in ``rows`` or not selected...
    complete: bool  # ...when True (the batch was not cut at its limit)
    pending: int  # selected findings above the cursor, ``rows`` included


_CURSOR_COLS = (
    "name, last_rowid, delivered, dropped, failed, pending, last_error, last_delivered_at_ms"
)


def read_cursor(store: Store, name: str) -> Cursor | None:
    row = store.conn.execute(
        f"SELECT {_CURSOR_COLS} FROM output_cursor WHERE name = ?", (name,)
    ).fetchone()
    return Cursor(*row) if row else None


def ensure_cursor(store: Store, name: str, start: str) -> Cursor:
    """The output's cursor; a new output starts at the newest finding ("end") or at 0."""
    with store.db.atomic():
        cur = read_cursor(store, name)
        if cur is not None:
            return cur
        top = 0
        if start == "end":
            top = int(
                store.conn.execute("SELECT coalesce(max(rowid), 0) FROM findings").fetchone()[0]
            )
        store.conn.execute(
            "INSERT INTO output_cursor (name, last_rowid, created_at_ms, updated_at_ms)"
            " VALUES (?, ?, ?, ?)",
            (name, top, _now_ms(), _now_ms()),
        )
    found = read_cursor(store, name)
    assert found is not None
    return found


def read_pending(
    store: Store, name: str, sel: Selection, limit: int, count_up_to: int | None = None
) -> Pending:
    """The next findings for an output, oldest first, in one read snapshot.

    ``pending`` is counted up to ``count_up_to`` at most (when given): enough to see that
    an output is over its bound, without counting a long backlog at every step.
    """
    c = store.conn
    with store.db.atomic():  # one snapshot: max(rowid) and the rows agree
        cur = read_cursor(store, name)
        last = cur.last_rowid if cur is not None else 0
        top = int(c.execute("SELECT coalesce(max(rowid), 0) FROM findings").fetchone()[0])
        if top < last:
            # The newest findings were deleted (retention) and SQLite reuses their rowids:
            # every finding left is at or below ``top`` and was dealt with.
            c.execute("UPDATE output_cursor SET last_rowid = ? WHERE name = ?", (top, name))
            last = top
        where, args = sel.where()
        cap = "" if count_up_to is None else f" LIMIT {int(count_up_to)}"
        pending = int(
            c.execute(
                "SELECT count(*) FROM (SELECT 1 FROM findings"
                f" WHERE rowid > ? AND rowid <= ? AND {where}{cap})",
                [last, top, *args],
            ).fetchone()[0]
        )
        rows = c.execute(
            f"{FINDING_SELECT} WHERE f.rowid > ? AND f.rowid <= ? AND {where}"
            " ORDER BY f.rowid LIMIT ?",
            [last, top, *args, limit],
        ).fetchall()
    out = [(int(r[0]), finding_row(r[1:])) for r in rows]
    return Pending(out, last, top, len(out) < limit, pending)


def skip_oldest(store: Store, name: str, sel: Selection, keep: int) -> int:
    """Skip the oldest pending findings beyond ``keep``; counted and journalled. How many."""
    c = store.conn
    where, args = sel.where()
    with store.db.atomic():
        cur = read_cursor(store, name)
        last = cur.last_rowid if cur is not None else 0
        row = c.execute(
            f"SELECT rowid FROM findings WHERE rowid > ? AND {where}"
            " ORDER BY rowid DESC LIMIT 1 OFFSET ?",
            [last, *args, keep],
        ).fetchone()
        if row is None:
            return 0
        new_last = int(row[0])
        n = int(
            c.execute(
                f"SELECT count(*) FROM findings WHERE rowid > ? AND rowid <= ? AND {where}",
                [last, new_last, *args],
            ).fetchone()[0]
        )
        now = _now_ms()
        c.execute(
            "UPDATE output_cursor SET last_rowid = ?, dropped = dropped + ?, updated_at_ms = ?"
            " WHERE name = ?",
            (new_last, n, now, name),
        )
        c.execute(
            "INSERT INTO journal (at_ms, source, kind, detail) VALUES (?, NULL, ?, ?)",
            (
                now,
                JOURNAL_DROPPED,
                (
                    f"output {name}: {n} findings skipped, more than max_queue = {keep} were"
                    " waiting for delivery"
                ),
            ),
        )
    return n


def record_delivery(store: Store, name: str, last_rowid: int, delivered: int, pending: int) -> None:
    """Move the cursor past what was delivered (and what the output does not select)."""
    now = _now_ms()
    with store.db.atomic():
        store.conn.execute(
            "UPDATE output_cursor SET last_rowid = max(last_rowid, ?), delivered = delivered + ?,"
            " pending = ?, last_error = NULL, updated_at_ms = ?,"
            " last_delivered_at_ms = CASE WHEN ? > 0 THEN ? ELSE last_delivered_at_ms END"
            " WHERE name = ?",
            (last_rowid, delivered, pending, now, delivered, now, name),
        )


def record_failure(store: Store, name: str, error: str, pending: int) -> None:
    with store.db.atomic():
        store.conn.execute(
            "UPDATE output_cursor SET failed = failed + 1, last_error = ?, pending = ?,"
            " updated_at_ms = ? WHERE name = ?",
            (error, pending, _now_ms(), name),
        )


def output_status(store: Store, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Lasting per-output totals for ``status``; ``pending`` as of the last attempt."""
    rows = store.conn.execute(f"SELECT {_CURSOR_COLS} FROM output_cursor ORDER BY name").fetchall()
    out = [
        {
            "name": r[0],
            "delivered": r[2],
            "dropped": r[3],
            "failed": r[4],
            "pending": r[5],
            "last_error": r[6],
            "last_delivered_ms": r[7],
        }
        for r in rows
    ]
    return [o for o in out if names is None or o["name"] in names]
