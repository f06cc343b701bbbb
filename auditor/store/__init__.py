"""SQLite store: schema, batch writer and queries.

``Store`` and the other names below are imported on first use, not with the package: the
decode worker imports ``auditor.store.eventblocks`` alone, and importing ``db`` (with
sqlite_utils) cost its start about a third of its time, while the scan waited for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from auditor.store.db import Store, StoredPosition, finding_id

__all__ = ["Store", "StoredPosition", "finding_id"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(importlib.import_module("auditor.store.db"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
