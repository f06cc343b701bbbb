"""Data completeness: did logging itself work in the period? (PCI DSS 10.7.2, 10.4.1.)

Pure. Per source: requests in the period from ``minute_stats``, line counters since the
store was created, stretches with no data longer than the threshold (inside the period and
at its edges), rotations, resumes and errors from the journal, silence findings. Then the
read gaps found in the period: log data lost before it was read (``auditor.readgap``). It
ends in one statement a reviewer can quote: "No gaps: ..." or "Gaps: ...", and "Read
gaps: ..." when there are any.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from auditor.readgap import JOURNAL_KIND as READ_GAP
from auditor.report.text import clean
from auditor.report.wording import format_info
from auditor.store.report_queries import MINUTE_MS, ReportRows, SourcePeriod, SourceRow

MAX_LISTED_GAPS = 12
MAX_LISTED_READ_GAPS = 6


@dataclass(frozen=True, slots=True)
class SourceSetting:
    """A configured source: the scheme it sets tells whether plain HTTP is knowable."""

    name: str
    path: str = ""
    format: str = "auto"
    scheme: str | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    source: str
    start: datetime
    end: datetime

    @property
    def minutes(self) -> int:
        return int((self.end - self.start).total_seconds() // 60)


@dataclass(frozen=True, slots=True)
class SourceView:
    name: str
    path: str
    format: str
    requests: int
    prev_requests: int
    auth_failures: int
    status_5xx: int
    plain_http: int
    minutes_with_data: int
    first: datetime | None
    last: datetime | None
    lines_read: int
    lines_parsed: int
    lines_unparsed: int
    lines_truncated: int
    rotations_total: int
    gaps: tuple[Gap, ...]
    rotations: int  # journal records in the period
    resumes: int
    errors: int
    silences: int
    read_gaps: int  # journal records in the period
    last_error: str | None
    scheme_visible: bool
    cannot_show: str
    store_since: datetime | None


@dataclass(frozen=True, slots=True)
class JournalEntry:
    at: datetime
    source: str
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class Completeness:
    sources: tuple[SourceView, ...]
    gaps: tuple[Gap, ...]
    gap_count: int
    complete: bool
    statement: str
    journal: tuple[JournalEntry, ...]
    journal_counts: tuple[tuple[str, str, int], ...]
    store_days: float | None
    read_gaps: tuple[JournalEntry, ...]  # found in the period, oldest first
    read_gap_count: int  # all of them (``read_gaps`` may be cut short)


def qualified(host: str, source: str) -> str:
    """A source's name in a fleet report, ``host/source``; unchanged for one store."""
    return f"{host}/{source}" if host else source


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _minute(m: int) -> datetime:
    return _dt(m * MINUTE_MS)


def _kind(kind: str) -> str:
    k = kind.lower()
    if k == READ_GAP:
        return READ_GAP
    if "rotat" in k or "truncat" in k:
        return "rotation"
    if "resum" in k:
        return "resume"
    if "error" in k or "fail" in k:
        return "error"
    return "other"


def source_gaps(p: SourcePeriod, start_ms: int, end_ms: int, threshold: int) -> tuple[Gap, ...]:
    """Stretches longer than ``threshold`` minutes without data, the edges included."""
    m0, m1 = start_ms // MINUTE_MS, -(-end_ms // MINUTE_MS)
    if not p.requests or p.first_minute is None or p.last_minute is None:
        return (Gap(p.source, _dt(start_ms), _dt(end_ms)),)
    out = []
    if p.first_minute - m0 > threshold:
        out.append(Gap(p.source, _dt(start_ms), _minute(p.first_minute)))
    out.extend(Gap(p.source, _minute(a + 1), _minute(b)) for a, b in p.gaps)
    if m1 - 1 - p.last_minute > threshold:
        out.append(Gap(p.source, _minute(p.last_minute + 1), _dt(end_ms)))
    return tuple(out)


def _fmt_gap(g: Gap) -> str:
    same_day = g.start.date() == g.end.date()
    end = f"{g.end:%H:%MZ}" if same_day else f"{g.end:%Y-%m-%dT%H:%MZ}"
    return f"{clean(g.source, 60)} {g.start:%Y-%m-%dT%H:%MZ} to {end} ({g.minutes:,} min)"


def _statement(
    views: Sequence[SourceView],
    gaps: Sequence[Gap],
    read_gaps: Sequence[JournalEntry],
    read_gap_count: int,
    start: datetime,
    end: datetime,
    n: int,
) -> str:
    if not read_gap_count:
        return _stretches(views, gaps, start, end, n)
    # "No gaps" would contradict what comes first.
    stretches = _stretches(views, gaps, start, end, n, none="No stretch without data")
    listed = "; ".join(
        f"{g.source}, found {g.at:%Y-%m-%dT%H:%MZ}" for g in read_gaps[:MAX_LISTED_READ_GAPS]
    )
    more = read_gap_count - min(len(read_gaps), MAX_LISTED_READ_GAPS)
    listed += f"; and {more} more" if more > 0 else ""
    # Said first: lines lost for good weigh more than a quiet stretch.
    return (
        f"Read gaps: {read_gap_count} time(s) log data was lost before it could be read "
        f'({listed}); each is listed under "Log data not read" in section 1. {stretches}'
    )


def _stretches(
    views: Sequence[SourceView],
    gaps: Sequence[Gap],
    start: datetime,
    end: datetime,
    n: int,
    none: str = "No gaps",
) -> str:
    if not views:
        return "No data: no log source has delivered any line to the store."
    if not any(v.requests for v in views):
        return (
            f"No data: no source delivered a request between {start:%Y-%m-%dT%H:%MZ} and "
            f"{end:%Y-%m-%dT%H:%MZ}."
        )
    if gaps:
        listed = "; ".join(_fmt_gap(g) for g in gaps[:MAX_LISTED_GAPS])
        more = f"; and {len(gaps) - MAX_LISTED_GAPS} more" if len(gaps) > MAX_LISTED_GAPS else ""
        return (
            f"Gaps: {len(gaps)} stretch(es) of more than {n} minutes without data: {listed}{more}."
        )
    return f"{none}: every source delivered data at least every {n} minutes of the period."


def build_completeness(
    rows: ReportRows, settings: Sequence[SourceSetting], threshold: int
) -> Completeness:
    counters: dict[str, SourceRow] = {s.source: s for s in rows.sources}
    periods = {p.source: p for p in rows.periods}
    prev = {p.source: p.requests for p in rows.prev_periods}
    configured = {s.name: s for s in settings}
    names = sorted(set(counters) | set(configured))
    journal_by: dict[tuple[str, str], int] = {}
    for src, kind, n in rows.journal_counts:
        key = (src or "", _kind(kind))
        journal_by[key] = journal_by.get(key, 0) + n
    read_gaps = tuple(
        JournalEntry(_dt(g.at_ms), clean(g.source or "-", 60), READ_GAP, clean(g.detail, 600))
        for g in rows.read_gaps
    )
    counted = sum(n for (_, kind), n in journal_by.items() if kind == READ_GAP)
    read_gap_count = max(counted, len(read_gaps))
    silences: dict[str, int] = {}
    for f in rows.findings:
        if f.category == "log-silence":
            name = qualified(f.host, f.source or "")
            silences[name] = silences.get(name, 0) + 1
    views: list[SourceView] = []
    all_gaps: list[Gap] = []
    firsts: list[int] = []
    for name in names:
        c = counters.get(name)
        s = configured.get(name)
        p = periods.get(name) or SourcePeriod(name, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, None, (), None)
        expected = s is not None or p.requests > 0
        gaps = source_gaps(p, rows.start_ms, rows.end_ms, threshold) if expected else ()
        all_gaps.extend(gaps)
        if p.store_first_minute is not None:
            firsts.append(p.store_first_minute)
        fmt = (c.format if c and c.format else None) or (s.format if s else None) or "unknown"
        info = format_info(fmt)
        views.append(
            SourceView(
                name=clean(name, 80),
                path=clean((c.path if c else None) or (s.path if s else "") or "-", 200),
                format=clean(fmt, 60),
                requests=p.requests,
                prev_requests=prev.get(name, 0),
                auth_failures=p.auth_failures,
                status_5xx=p.status_5xx,
                plain_http=p.plain_http,
                minutes_with_data=p.minutes_with_data,
                first=_minute(p.first_minute) if p.first_minute is not None else None,
                last=_minute(p.last_minute) if p.last_minute is not None else None,
                lines_read=c.lines_read if c else 0,
                lines_parsed=c.lines_parsed if c else 0,
                lines_unparsed=c.lines_unparsed if c else 0,
                lines_truncated=c.lines_truncated if c else 0,
                rotations_total=c.rotations if c else 0,
                gaps=gaps,
                rotations=journal_by.get((name, "rotation"), 0),
                resumes=journal_by.get((name, "resume"), 0),
                errors=journal_by.get((name, "error"), 0),
                silences=silences.get(name, 0),
                read_gaps=journal_by.get((name, READ_GAP), 0),
                last_error=clean(c.last_error, 200) if c and c.last_error else None,
                scheme_visible=bool(
                    (s is not None and s.scheme) or info.scheme or p.plain_http > 0
                ),
                cannot_show=info.cannot_show,
                store_since=_minute(p.store_first_minute)
                if p.store_first_minute is not None
                else None,
            )
        )
    start, end = _dt(rows.start_ms), _dt(rows.end_ms)
    all_gaps.sort(key=lambda g: (g.start, g.source))
    store_days = (rows.end_ms // MINUTE_MS - min(firsts)) / 1440 if firsts else None
    complete = any(v.requests for v in views) and not all_gaps and not read_gap_count
    return Completeness(
        sources=tuple(views),
        gaps=tuple(all_gaps[:200]),
        gap_count=len(all_gaps),
        complete=complete,
        statement=_statement(views, all_gaps, read_gaps, read_gap_count, start, end, threshold),
        journal=tuple(
            JournalEntry(
                _dt(j.at_ms), clean(j.source or "-", 60), clean(j.kind, 40), clean(j.detail, 200)
            )
            for j in rows.journal
        ),
        journal_counts=tuple(
            (clean(s or "-", 60), clean(k, 40), n) for s, k, n in rows.journal_counts
        ),
        store_days=max(0.0, store_days) if store_days is not None else None,
        read_gaps=read_gaps,
        read_gap_count=read_gap_count,
    )
