"""The CONTRACT.md JSON shapes of a finding and an event, from a store row or from itself.

The store's query helpers yield rows with epoch-millisecond times and a numeric severity;
``findings --json`` prints them as ISO 8601 strings and a severity name. Either form is
accepted here, so callers (the CLI, the daemon's outputs) need not care which they hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from auditor.model import Severity

FINDING_FIELDS: tuple[str, ...] = (
    "id",
    "rule_id",
    "title",
    "category",
    "severity",
    "client_ip",
    "source",
    "first_seen",
    "last_seen",
    "count",
    "pii_type",
    "distinct_values",
    "evidence",
    "controls",
    "status",
)


def iso_ms(ms: int | None) -> str | None:
    """Milliseconds since the epoch → ``2026-11-20T08:00:00.123Z``."""
    if ms is None:
        return None
    try:
        dt = datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, ValueError, OSError):
        return None  # outside the years datetime can write
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_iso_ms(text: str) -> int | None:
    """ISO 8601 (``Z`` or an offset; none means UTC) → epoch ms; ``None`` when unreadable."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)


def time_ms(d: Mapping[str, Any], name: str) -> int | None:
    """``d[name + "_ms"]`` (store row) or ``d[name]`` (ISO text) as epoch ms."""
    ms = d.get(f"{name}_ms")
    if isinstance(ms, int) and not isinstance(ms, bool):
        return ms
    text = d.get(name)
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    return parse_iso_ms(text) if isinstance(text, str) else None


def severity_of(value: object) -> Severity | None:
    """A severity from its number (store) or its name (CONTRACT); ``None`` when neither."""
    if isinstance(value, Severity):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return Severity(value)
        except ValueError:
            return None
    if isinstance(value, str):
        try:
            return Severity.parse(value)
        except KeyError:
            return None
    return None


def controls_of(f: Mapping[str, Any]) -> list[str]:
    raw = f.get("controls")
    if isinstance(raw, list | tuple):
        return [c for c in raw if isinstance(c, str)]
    return []


def finding_native(f: Mapping[str, Any]) -> dict[str, Any]:
    """The CONTRACT.md shape of a finding (``findings --json``)."""
    sev = severity_of(f.get("severity"))
    return {
        "id": f.get("id"),
        "rule_id": f.get("rule_id"),
        "title": f.get("title"),
        "category": f.get("category"),
        "severity": str(sev) if sev is not None else f.get("severity"),
        "client_ip": f.get("client_ip"),
        "source": f.get("source"),
        "first_seen": iso_ms(time_ms(f, "first_seen")),
        "last_seen": iso_ms(time_ms(f, "last_seen")),
        "count": f.get("count"),
        "pii_type": f.get("pii_type"),
        "distinct_values": f.get("distinct_values"),
        "evidence": f.get("evidence"),
        "controls": controls_of(f),
        "status": f.get("status"),
    }


def event_native(e: Mapping[str, Any]) -> dict[str, Any]:
    """The ``events --json`` shape: the stored fields with ``timestamp`` for ``ts_ms``."""
    out = {k: v for k, v in e.items() if k != "ts_ms"}
    if "ts_ms" in e:
        out["timestamp"] = iso_ms(time_ms(e, "ts"))
    return out
