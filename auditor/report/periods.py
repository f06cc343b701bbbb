"""Report periods in UTC: the last full day, ISO week or calendar month before an instant.

Pure date arithmetic shared by the CLI (default: the last full day) and the scheduler
(the period a cron fire reports on), plus the file name that carries the period.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

PERIODS = ("day", "week", "month")


def floor_day(t: datetime) -> datetime:
    t = t.astimezone(UTC)
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def period_end(kind: str, t: datetime) -> datetime:
    """The start of the day, ISO week (Monday) or month that contains ``t``."""
    d = floor_day(t)
    if kind == "day":
        return d
    if kind == "week":
        return d - timedelta(days=d.weekday())
    if kind == "month":
        return d.replace(day=1)
    raise ValueError(f"unknown period {kind!r}; expected one of {', '.join(PERIODS)}")


def previous_start(kind: str, end: datetime) -> datetime:
    if kind == "day":
        return end - timedelta(days=1)
    if kind == "week":
        return end - timedelta(days=7)
    if kind == "month":
        last = end - timedelta(days=1)
        return last.replace(day=1)
    raise ValueError(f"unknown period {kind!r}")


def last_full_period(kind: str, t: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` of the last complete period ending at or before ``t``."""
    end = period_end(kind, t)
    return previous_start(kind, end), end


def next_period(kind: str, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The period right after ``[start, end)``."""
    if kind == "month":
        nxt = (end + timedelta(days=32)).replace(day=1)
        return end, nxt
    return end, end + (end - start)


def label(kind: str | None, start: datetime, end: datetime) -> str:
    """``2026-11-20``, ``2026-W47``, ``2026-11``, else ``20261120T0000Z-20261121T0000Z``."""
    if kind == "day" and end - start == timedelta(days=1):
        return f"{start:%Y-%m-%d}"
    if kind == "week" and end - start == timedelta(days=7):
        return f"{start:%G-W%V}"
    if kind == "month" and last_full_period("month", end) == (start, end):
        return f"{start:%Y-%m}"
    return f"{start:%Y%m%dT%H%MZ}-{end:%Y%m%dT%H%MZ}"


_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def report_filename(job: str | None, kind: str | None, start: datetime, end: datetime) -> str:
    """``log-auditor-<job>-<period>.pdf``; the job name is reduced to safe characters."""
    name = _SAFE.sub("-", job).strip("-") if job else "report"
    return f"log-auditor-{name or 'job'}-{label(kind, start, end)}.pdf"
