"""Values of the store's ``meta`` table that both the writer (``auditor.store.db``) and the
report (``auditor.store.report_queries``) read: here, so that the writer imports no report
code (its row types made ~10 ms of a scan's start)."""

from __future__ import annotations

import sqlite3


def client_days_through(conn: sqlite3.Connection) -> int:
    """The last day rolled up into ``client_days`` (see ``Store._client_days``); -1: none
    (migration m006 set it for stores that kept every day complete before)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'client_days_through'").fetchone()
    return int(row[0]) if row else -1
