"""Small builders shared by tests (imported as a top-level module: tests/ is on sys.path)."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auditor.model import Event
from auditor.store.eventblocks import block_dicts

ROOT = Path(__file__).resolve().parent.parent


def corpus_dir() -> Path | None:
    """../shared/corpus beside the repository, or $LOG_AUDITOR_CORPUS; None when absent."""
    env = os.environ.get("LOG_AUDITOR_CORPUS")
    candidates = [Path(env)] if env else []
    candidates.append(ROOT.parent / "shared" / "corpus")
    for c in candidates:
        if c.is_dir():
            return c
    return None


def make_event(**kw: object) -> Event:
    """An Event with sensible defaults; override any field by keyword."""
    base: dict[str, object] = {
        "timestamp": datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC),
        "source": "test",
        "format": "nginx-combined",
        "client_ip": "198.51.100.7",
        "client_port": None,
        "method": "GET",
        "scheme": None,
        "host": None,
        "server_port": None,
        "path": "/",
        "route": "/",
        "query": None,
        "http_version": "1.1",
        "status": 200,
        "bytes_in": None,
        "bytes_out": 100,
        "duration_ms": None,
        "user_name": None,
        "user_agent": "curl/8.4",
        "referrer": None,
        "tls_version": None,
        "request_id": None,
        "forwarded_for": None,
        "file": "test.log",
        "offset": 0,
    }
    base.update(kw)
    return Event(**base)  # type: ignore[arg-type]


def stored_events(db: Path | sqlite3.Connection) -> list[dict[str, Any]]:
    """Every stored event of a store file (read-only) or connection, as ``events --json``."""
    conn = db if isinstance(db, sqlite3.Connection) else None
    if conn is None:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        blocks = conn.execute("SELECT id, data FROM event_blocks ORDER BY id").fetchall()
    finally:
        if not isinstance(db, sqlite3.Connection):
            conn.close()
    return [d for block_id, data in blocks for d in block_dicts(block_id, data)]
