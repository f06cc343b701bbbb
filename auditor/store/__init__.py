"""SQLite store: schema, batch writer and queries."""

from __future__ import annotations

from auditor.store.db import Store, StoredPosition, finding_id

__all__ = ["Store", "StoredPosition", "finding_id"]
