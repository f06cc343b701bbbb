"""Helpers shared by the CLI verbs: config and store resolution, time arguments."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from auditor.config import DEFAULT_CONFIG_PATH, Config, load_config
from auditor.errors import UsageError

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file (default: $LOG_AUDITOR_CONFIG, else /etc/log-auditor/config.toml if present).",
)
db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite store (default: the config's [store] path, else ./log-auditor.db).",
)


def resolve_config(config_path: Path | None) -> Config:
    """The explicit config, else $LOG_AUDITOR_CONFIG, else the system one if present."""
    if config_path is not None:
        return load_config(config_path)
    env = os.environ.get("LOG_AUDITOR_CONFIG")
    if env:
        return load_config(Path(env))
    if DEFAULT_CONFIG_PATH.exists() and os.access(DEFAULT_CONFIG_PATH, os.R_OK):
        return load_config(DEFAULT_CONFIG_PATH)
    return Config()


def resolve_db(config: Config, db_path: Path | None) -> Path:
    if db_path is not None:
        return db_path
    return config.store.path


_SPAN = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, *, now: datetime | None = None, option: str = "time") -> datetime:
    """ISO 8601 (a bare date is midnight UTC; no offset means UTC) or a span like ``24h``."""
    now = now or datetime.now(UTC)
    t = text.strip()
    m = _SPAN.match(t)
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option}: cannot read {text!r} as a time; use ISO 8601 such as "
            "2026-11-20T08:00:00Z, a date, or a span such as 24h or 7d"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def to_ms(dt: datetime | None) -> int | None:
    return None if dt is None else int(dt.timestamp() * 1000)


def iso_ms(ms: int | None) -> str | None:
    """Milliseconds since the epoch → ``2026-11-20T08:00:00.123Z``."""
    if ms is None:
        return None
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
