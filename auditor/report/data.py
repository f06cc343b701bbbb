"""Pure: the store's report rows → one frozen ``ReportData`` that the PDF renders.

No I/O and no clock: the generation time, the key for pseudonyms and the rule metadata
come in as arguments, so the same rows always give the same report. Every string that
came from a log passes ``text.clean`` here (secrets masked, control characters dropped);
the PDF layer escapes it again for its mark-up.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from auditor.model import Severity
from auditor.report.assess import (
    RESULT_ORDER,
    ControlResult,
    Coverage,
    Result,
    RuleInfo,
    assess_controls,
    count_failures,
    tally,
)
from auditor.report.completeness import Completeness, SourceSetting, build_completeness
from auditor.report.controls import CATALOGUE_VERSION, CONTROLS, FRAMEWORKS, catalogue_hash
from auditor.report.text import clean
from auditor.report.views import (
    Activity,
    BreachClock,
    CategoryCount,
    ClientCount,
    ExposureView,
    FindingView,
    FrameworkSummary,
    Integrity,
    Meta,
    PreviousReport,
    ReportData,
    ReportOptions,
    RulesetInfo,
    RuleTally,
    SeverityCount,
    TrendRow,
)
from auditor.report.wording import CATEGORY_ACTION, CATEGORY_LABEL, CATEGORY_RISK, DEFAULT_ACTION
from auditor.store.report_queries import FindingRow, ReportRows

__all__ = [
    "Activity",
    "Completeness",
    "ControlResult",
    "FindingView",
    "PreviousReport",
    "ReportData",
    "ReportOptions",
    "Result",
    "RuleInfo",
    "RulesetInfo",
    "SourceSetting",
    "bucket_minutes_for",
    "build_report_data",
]

WILDCARD_CONTROLS = frozenset(c.id for c in CONTROLS if "*" in c.review_on)
BUCKETS = (5, 15, 30, 60, 180, 360, 720, 1440, 10080)
MAX_BARS = 36


def bucket_minutes_for(start: datetime, end: datetime) -> int:
    """The smallest chart bucket that keeps the period at or under 36 bars."""
    minutes = max(1, int((end - start).total_seconds() // 60))
    for b in BUCKETS:
        if minutes / b <= MAX_BARS:
            return b
    return BUCKETS[-1]


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _sev(n: int) -> str:
    try:
        return str(Severity(n))
    except ValueError:
        return str(n)


def pseudonym(key: bytes, value: str) -> str:
    """A keyed hash of a client address: stable per key, not reversible without it."""
    return (
        "anon-" + hmac.new(key, value.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:12]
    )


def _client(value: str | None, key: bytes | None) -> str:
    if not value:
        return "-"
    return pseudonym(key, value) if key is not None else clean(value, 64)


def report_id(org: str, job: str | None, start: datetime, end: datetime, at: datetime) -> str:
    seed = f"{org}\x1f{job}\x1f{start.isoformat()}\x1f{end.isoformat()}\x1f{at.isoformat()}"
    return f"LA-{start:%Y%m%d}-{hashlib.sha256(seed.encode()).hexdigest()[:8].upper()}"


def findings_digest(findings: Sequence[FindingRow]) -> str:
    """SHA-256 over ``id|rule|first_ms|last_ms|count`` lines sorted by id: re-computable
    from ``log-auditor findings --json`` for the same period."""
    h = hashlib.sha256()
    for f in sorted(findings, key=lambda f: f.id):
        h.update(f"{f.id}|{f.rule_id}|{f.first_seen_ms}|{f.last_seen_ms}|{f.count}\n".encode())
    return h.hexdigest()


def _severities(rows: ReportRows) -> tuple[SeverityCount, ...]:
    cur = Counter(f.severity for f in rows.findings)
    prev = Counter(f.severity for f in rows.prev_findings)
    ev: Counter[int] = Counter()
    for f in rows.findings:
        ev[f.severity] += f.count
    return tuple(
        SeverityCount(str(s), cur[int(s)], prev[int(s)], ev[int(s)]) for s in reversed(Severity)
    )


def _categories(rows: ReportRows) -> tuple[CategoryCount, ...]:
    cur = Counter(f.category for f in rows.findings)
    prev = Counter(f.category for f in rows.prev_findings)
    ev: Counter[str] = Counter()
    for f in rows.findings:
        ev[f.category] += f.count
    cats = sorted(set(cur) | set(prev), key=lambda c: (-cur[c], -ev[c], c))
    return tuple(
        CategoryCount(c, CATEGORY_LABEL.get(c, clean(c, 60)), cur[c], prev[c], ev[c]) for c in cats
    )


def _top_risks(
    findings: Sequence[FindingRow], distinct: dict[str, int], limit: int = 5
) -> tuple[str, ...]:
    by_cat: dict[str, list[FindingRow]] = defaultdict(list)
    for f in findings:
        by_cat[f.category].append(f)
    ranked = sorted(
        by_cat.items(),
        key=lambda kv: (-max(f.severity for f in kv[1]), -sum(f.count for f in kv[1]), kv[0]),
    )
    out = []
    for cat, fs in ranked[:limit]:
        sev = _sev(max(f.severity for f in fs)).capitalize()
        template = CATEGORY_RISK.get(cat, "{n} finding(s) of category " + clean(cat, 40) + ".")
        types = sorted({f.pii_type for f in fs if f.pii_type})
        text = template.format(
            n=len(fs),
            events=f"{sum(f.count for f in fs):,}",
            clients=len({f.client_ip for f in fs if f.client_ip}) or "some",
            values=f"{_values(fs, types, distinct):,}",
            types=", ".join(clean(t, 30) for t in types) or "unspecified",
        )
        out.append(f"{sev}: {text}")
    return tuple(out)


def _values(fs: Sequence[FindingRow], types: Sequence[str], distinct: dict[str, int]) -> int:
    """Distinct leaked values: from the exposure table when it knows the types."""
    if types and all(t in distinct for t in types):
        return sum(distinct[t] for t in types)
    return sum(f.distinct_values for f in fs)


def _breach_clock(rows: ReportRows, at: datetime) -> tuple[BreachClock, ...]:
    out = []
    for f in rows.findings:
        if f.severity < int(Severity.HIGH):
            continue
        detected = _dt(f.detected_at_ms)
        deadline = detected + timedelta(hours=72)
        ack = _dt(f.acknowledged_at_ms) if f.acknowledged_at_ms else None
        out.append(
            BreachClock(
                f.id,
                clean(f"{f.host}: {f.title}" if f.host else f.title, 120),
                _sev(f.severity),
                detected,
                deadline,
                ack,
                overdue=ack is None and at > deadline,
            )
        )
    return tuple(out)


def _finding_views(
    rows: ReportRows,
    options: ReportOptions,
    rules: dict[str, RuleInfo],
    matched: dict[str, list[str]],
) -> tuple[tuple[FindingView, ...], tuple[RuleTally, ...]]:
    shown = rows.findings[: options.max_detail + options.max_listed]
    views = []
    for f in shown:
        rule = rules.get(f.rule_id)
        action = (rule.remediation if rule else "") or CATEGORY_ACTION.get(
            f.category, DEFAULT_ACTION
        )
        tags = tuple(dict.fromkeys((*f.controls, *matched.get(f.id, ()))))
        views.append(
            FindingView(
                id=clean(f.id, 40, secret_safe=False),  # our own hex id, not log text
                rule_id=clean(f.rule_id, 80),
                title=clean(f.title, 200),
                category=clean(f.category, 40),
                severity=_sev(f.severity),
                first_seen=_dt(f.first_seen_ms),
                last_seen=_dt(f.last_seen_ms),
                count=f.count,
                client=_client(f.client_ip, options.pseudonym_key),
                source=clean(f.source or "-", 80),
                pii_type=clean(f.pii_type, 40) if f.pii_type else None,
                evidence=clean(f.evidence or "-", 400),
                controls=tuple(clean(t, 60) for t in tags),
                action=clean(action, 400),
                distinct_values=f.distinct_values,
                status=clean(f.status, 20),
                host=clean(f.host, 80),
            )
        )
    rest: dict[str, list[FindingRow]] = defaultdict(list)
    for f in rows.findings[options.max_detail + options.max_listed :]:
        rest[f.rule_id].append(f)
    tallies = tuple(
        RuleTally(
            clean(rid, 80),
            clean(fs[0].title, 120),
            _sev(max(f.severity for f in fs)),
            len(fs),
            sum(f.count for f in fs),
        )
        for rid, fs in sorted(rest.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    )
    return tuple(views), tallies


def _activity(rows: ReportRows, options: ReportOptions, start: datetime, end: datetime) -> Activity:
    b = rows.bucket_minutes
    n = max(1, -(-int((end - start).total_seconds() // 60) // b))
    starts = tuple(start + timedelta(minutes=b * i) for i in range(n))
    req, auth, err = [0] * n, [0] * n, [0] * n
    for bk in rows.buckets:
        if 0 <= bk.index < n:
            req[bk.index] += bk.requests
            auth[bk.index] += bk.auth_failures
            err[bk.index] += bk.status_5xx
    new = [0] * n
    for f in rows.findings:
        i = max(0, (f.first_seen_ms - rows.start_ms) // (b * 60_000))
        new[min(i, n - 1)] += 1
    total = rows.client_requests_total
    top = tuple(
        ClientCount(
            _client(c.client_ip, options.pseudonym_key),
            c.requests,
            c.requests / total if total else 0.0,
        )
        for c in rows.top_clients
    )
    shown = sum(c.requests for c in rows.top_clients)
    return Activity(
        bucket_minutes=b,
        starts=starts,
        requests=tuple(req),
        auth_failures=tuple(auth),
        errors_5xx=tuple(err),
        new_findings=tuple(new),
        top_clients=top,
        other_clients=max(0, rows.clients_total - len(top)),
        other_requests=max(0, total - shown),
        clients_total=rows.clients_total,
        requests_total=sum(p.requests for p in rows.periods),
    )


def _coverage(rows: ReportRows, comp: Completeness, at: datetime, gap: int) -> Coverage:
    urgent = [f for f in rows.findings if f.severity >= int(Severity.HIGH)]
    overdue = sum(
        1
        for f in urgent
        if not f.acknowledged_at_ms and at > _dt(f.detected_at_ms) + timedelta(hours=72)
    )
    return Coverage(
        requests=sum(p.requests for p in rows.periods),
        auth_failures=sum(p.auth_failures for p in rows.periods),
        plain_http=sum(p.plain_http for p in rows.periods),
        gaps=comp.gap_count,
        read_gaps=comp.read_gap_count,
        silences=sum(1 for f in rows.findings if f.category == "log-silence"),
        scheme_blind=tuple(
            f"{s.name} ({s.format or 'unknown'})" for s in comp.sources if not s.scheme_visible
        ),
        store_days=comp.store_days,
        open_findings=sum(1 for f in rows.findings if f.status == "open"),
        acknowledged=sum(1 for f in rows.findings if f.acknowledged_at_ms),
        urgent=len(urgent),
        urgent_overdue=overdue,
        exposure_types=rows.exposure_distinct,
        gap_minutes=gap,
    )


def _prev_coverage(rows: ReportRows, cov: Coverage) -> Coverage:
    return Coverage(
        requests=sum(p.requests for p in rows.prev_periods),
        scheme_blind=cov.scheme_blind,
        gap_minutes=cov.gap_minutes,
    )


def _verdict(
    org: str,
    frameworks: Sequence[FrameworkSummary],
    n_findings: int,
    sev: Sequence[SeverityCount],
    requests: int,
) -> str:
    total = dict.fromkeys(RESULT_ORDER, 0)
    for fw in frameworks:
        for r, n in fw.counts:
            total[r] += n
    parts = (
        f"{total[Result.FAIL]} control(s) not met, {total[Result.REVIEW]} need review, "
        f"{total[Result.PASS]} met and {total[Result.NA]} not assessable from access logs"
    )
    if n_findings == 0:
        found = "no findings"
    else:
        bysev = ", ".join(f"{s.findings} {s.severity}" for s in sev if s.findings)
        found = f"{n_findings} finding(s) ({bysev})"
    return f"{clean(org, 120)}: {parts}; {found} in {requests:,} requests."


def build_report_data(
    rows: ReportRows,
    *,
    generated_at: datetime,
    options: ReportOptions,
    ruleset: RulesetInfo,
) -> ReportData:
    """Assemble the whole report from the store's rows; pure and deterministic."""
    start, end = _dt(rows.start_ms), _dt(rows.end_ms)
    rules = {r.id: r for r in ruleset.rules}
    comp = build_completeness(rows, options.sources, options.gap_minutes)
    cov = _coverage(rows, comp, generated_at, options.gap_minutes)
    controls = assess_controls(rows.findings, rows.prev_findings, ruleset.rules, cov)
    prev_controls = assess_controls(
        rows.prev_findings, (), ruleset.rules, _prev_coverage(rows, cov)
    )
    frameworks = tuple(
        FrameworkSummary(fw.key, fw.name, tuple(tally(controls, fw.key).items()))
        for fw in FRAMEWORKS
    )
    matched: dict[str, list[str]] = defaultdict(list)
    for c in controls:
        if c.id in WILDCARD_CONTROLS:  # "every finding is review evidence": not worth listing
            continue
        for fid in c.finding_ids:
            matched[fid].append(c.id)
    views, omitted = _finding_views(rows, options, rules, matched)
    full, listed = views[: options.max_detail], views[options.max_detail :]
    severities = _severities(rows)
    activity = _activity(rows, options, start, end)
    rid = report_id(options.organisation, options.job, start, end, generated_at)
    meta = Meta(
        report_id=rid,
        organisation=clean(options.organisation, 120),
        scope=clean(options.scope, 400),
        job=options.job,
        start=start,
        end=end,
        generated_at=generated_at,
        generator=options.generator,
        ruleset_version=clean(ruleset.version, 60),
        ruleset_hash=ruleset.hash,
        ruleset_error=clean(ruleset.error, 300) if ruleset.error else None,
        rule_count=len(ruleset.rules),
        catalogue_version=CATALOGUE_VERSION,
        catalogue_hash=catalogue_hash(),
        pseudonymised=options.pseudonym_key is not None,
        query=(
            f"findings with last_seen >= {start:%Y-%m-%dT%H:%M:%SZ} and first_seen < "
            f"{end:%Y-%m-%dT%H:%M:%SZ}; per-minute, per-hour and per-day aggregates in the "
            "same window"
        ),
        store=clean(options.store, 200),
        paper=options.paper,
        logo=options.logo,
        gap_minutes=options.gap_minutes,
    )
    prev_requests = sum(p.requests for p in rows.prev_periods)
    trend = (
        TrendRow("Requests", prev_requests, activity.requests_total),
        TrendRow(
            "Responses 401/403", sum(p.auth_failures for p in rows.prev_periods), cov.auth_failures
        ),
        TrendRow(
            "Responses 5xx",
            sum(p.status_5xx for p in rows.prev_periods),
            sum(p.status_5xx for p in rows.periods),
        ),
        TrendRow("Findings", len(rows.prev_findings), len(rows.findings)),
        TrendRow(
            "Findings high or critical",
            sum(1 for f in rows.prev_findings if f.severity >= int(Severity.HIGH)),
            cov.urgent,
        ),
        TrendRow("Controls not met", count_failures(prev_controls), count_failures(controls)),
    )
    return ReportData(
        meta=meta,
        verdict=_verdict(
            options.organisation, frameworks, len(rows.findings), severities, cov.requests
        ),
        frameworks=frameworks,
        severities=severities,
        categories=_categories(rows),
        top_risks=_top_risks(rows.findings, dict(rows.exposure_distinct)),
        breach_clock=_breach_clock(rows, generated_at),
        controls=controls,
        findings=full,
        listed=listed,
        findings_total=len(rows.findings),
        events_total=sum(f.count for f in rows.findings),
        omitted=omitted,
        exposures=tuple(
            ExposureView(
                clean(e.pii_type, 40),
                clean(e.location, 20),
                clean(e.route, 200),
                clean(e.param or "-", 80),
                e.distinct_values,
                e.occurrences,
                _dt(e.first_ms),
                _dt(e.last_ms),
            )
            for e in rows.exposures
        ),
        exposure_types=tuple((clean(t, 40), n) for t, n in rows.exposure_distinct),
        activity=activity,
        completeness=comp,
        trend=trend,
        integrity=Integrity(
            findings_digest=findings_digest(rows.findings),
            catalogue_hash=meta.catalogue_hash,
            ruleset_hash=ruleset.hash,
            previous=options.previous,
            inputs=rows.inputs,
        ),
    )
