"""Pure: several hosts' report rows → one fleet report (``log-auditor report --db A --db B``).

One sidecar runs per host, each with its own store. The fleet report reads every store on
its own (the same queries as a one-host report), then merges the rows here: sources are
named ``host/source`` so nothing of two hosts is added up by accident, findings keep their
host, and the control matrix is assessed over all findings and events together. A control
fails if it fails on any host, because a failing finding of any host is in the merged set;
``control_hosts`` says on which. Each host also keeps its own completeness, for the per-host
table.

Counts that cannot be merged exactly are said so: distinct leaked values are counted per
host (each host keys its digests with its own key), distinct clients are exact up to the
number of clients read per host.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from auditor.report.assess import Result, finding_outcomes, resolve_tag
from auditor.report.completeness import SourceSetting, build_completeness, qualified
from auditor.report.data import build_report_data, findings_digest
from auditor.report.text import clean
from auditor.report.views import (
    ControlHosts,
    Fleet,
    HostView,
    ReportData,
    ReportOptions,
    RulesetInfo,
)
from auditor.store.report_queries import (
    Bucket,
    ClientRow,
    ExposureRow,
    FindingRow,
    InputRow,
    JournalRow,
    ReportRows,
    SourcePeriod,
    SourceRow,
)

__all__ = [
    "CLIENTS_PER_HOST",
    "HostRows",
    "control_hosts",
    "fleet_report_data",
    "host_names",
    "merge_rows",
]

# Top clients are merged from each host's busiest clients: exact while no host has more.
CLIENTS_PER_HOST = 5000
# Keys of a store's ``meta`` table that name its host, first match wins.
HOST_KEYS = ("host", "hostname", "host_name", "node")


@dataclass(frozen=True, slots=True)
class HostRows:
    """One store's rows for the period and the facts about the file as it was read."""

    store: str  # the path as given
    stem: str  # file name without ``.db``: the host name when the store names none
    sha256: str
    size: int
    modified: datetime
    changed: bool  # size or mtime differed after reading (a live store)
    rows: ReportRows


def _meta_name(rows: ReportRows) -> str | None:
    meta = dict(rows.meta)
    for key in HOST_KEYS:
        value = clean(meta.get(key, ""), 80).strip()
        if value:
            return value
    return None


def host_names(hosts: Sequence[HostRows]) -> tuple[tuple[str, str], ...]:
    """(name, where it came from) per host, unique: a repeated name gets its file stem."""
    named = []
    for h in hosts:
        m = _meta_name(h.rows)
        named.append((m, "store meta") if m else (clean(h.stem, 80) or "store", "file name"))
    counts = Counter(n for n, _ in named)
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for (name, origin), h in zip(named, hosts, strict=True):
        if counts[name] > 1:
            name = f"{name} ({clean(h.stem, 60)})"
        base, n = name, 2
        while name in seen:
            name, n = f"{base} #{n}", n + 1
        seen.add(name)
        out.append((name, origin))
    return tuple(out)


def _sources(host: str, rows: Sequence[SourceRow]) -> list[SourceRow]:
    return [dataclasses.replace(s, source=qualified(host, s.source)) for s in rows]


def _periods(host: str, rows: Sequence[SourcePeriod]) -> list[SourcePeriod]:
    return [dataclasses.replace(p, source=qualified(host, p.source)) for p in rows]


def _findings(host: str, rows: Sequence[FindingRow]) -> list[FindingRow]:
    return [dataclasses.replace(f, host=host) for f in rows]


def _finding_order(f: FindingRow) -> tuple[int, int, int, str, str]:
    """The store's order (severity, count, first seen, id), then the host."""
    return (-f.severity, -f.count, f.first_seen_ms, f.id, f.host)


def _buckets(parts: Sequence[ReportRows]) -> tuple[Bucket, ...]:
    acc: dict[int, list[int]] = {}
    for rows in parts:
        for b in rows.buckets:
            cur = acc.setdefault(b.index, [0, 0, 0])
            cur[0] += b.requests
            cur[1] += b.auth_failures
            cur[2] += b.status_5xx
    return tuple(Bucket(i, *v) for i, v in sorted(acc.items()))


def _exposures(parts: Sequence[ReportRows]) -> tuple[ExposureRow, ...]:
    """One row per type, location, route and parameter; distinct values added per host."""
    acc: dict[tuple[str, str, str, str], list[int]] = {}
    for rows in parts:
        for e in rows.exposures:
            key = (e.pii_type, e.location, e.route, e.param)
            cur = acc.get(key)
            if cur is None:
                acc[key] = [e.distinct_values, e.occurrences, e.first_ms, e.last_ms]
            else:
                cur[0] += e.distinct_values
                cur[1] += e.occurrences
                cur[2] = min(cur[2], e.first_ms)
                cur[3] = max(cur[3], e.last_ms)
    out = [ExposureRow(*k, *v) for k, v in acc.items()]
    out.sort(key=lambda e: (-e.distinct_values, -e.occurrences, e.pii_type, e.route, e.param))
    return tuple(out)


def _exposure_distinct(parts: Sequence[ReportRows]) -> tuple[tuple[str, int], ...]:
    acc: Counter[str] = Counter()
    for rows in parts:
        for t, n in rows.exposure_distinct:
            acc[t] += n
    return tuple(sorted(acc.items(), key=lambda kv: (-kv[1], kv[0])))


def _clients(parts: Sequence[ReportRows], top_n: int) -> tuple[tuple[ClientRow, ...], int, int]:
    """Top clients over all hosts; a client seen on two hosts is one client."""
    requests: Counter[str] = Counter()
    unread = 0  # clients a host has beyond the rows it gave: counted, not merged
    for rows in parts:
        for c in rows.top_clients:
            requests[c.client_ip] += c.requests
        unread += max(0, rows.clients_total - len(rows.top_clients))
    top = sorted(requests.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
    total = sum(rows.client_requests_total for rows in parts)
    return tuple(ClientRow(ip, n) for ip, n in top), len(requests) + unread, total


def merge_rows(hosts: Sequence[tuple[str, ReportRows]], top_n: int = 10) -> ReportRows:
    """Several hosts' rows for the same period as one store's rows.

    Sources, journal records, read gaps and input files are renamed ``host/source``;
    findings keep their id and source and get their host. Every host's rows must cover the
    same period.
    """
    if not hosts:
        raise ValueError("merge_rows needs at least one host")
    first = hosts[0][1]
    for name, rows in hosts:
        if (rows.start_ms, rows.end_ms, rows.bucket_minutes) != (
            first.start_ms,
            first.end_ms,
            first.bucket_minutes,
        ):
            raise ValueError(f"{name}: rows of another period than {hosts[0][0]}")
    parts = [rows for _, rows in hosts]
    findings = [f for name, rows in hosts for f in _findings(name, rows.findings)]
    prev = [f for name, rows in hosts for f in _findings(name, rows.prev_findings)]
    journal = [
        dataclasses.replace(j, source=qualified(name, j.source or "-"))
        for name, rows in hosts
        for j in rows.journal
    ]
    journal.sort(key=lambda j: j.at_ms)
    top, n_clients, client_total = _clients(parts, top_n)
    return ReportRows(
        start_ms=first.start_ms,
        end_ms=first.end_ms,
        bucket_minutes=first.bucket_minutes,
        findings=tuple(sorted(findings, key=_finding_order)),
        prev_findings=tuple(sorted(prev, key=_finding_order)),
        sources=tuple(s for name, rows in hosts for s in _sources(name, rows.sources)),
        periods=tuple(p for name, rows in hosts for p in _periods(name, rows.periods)),
        prev_periods=tuple(p for name, rows in hosts for p in _periods(name, rows.prev_periods)),
        buckets=_buckets(parts),
        exposures=_exposures(parts),
        exposure_distinct=_exposure_distinct(parts),
        top_clients=top,
        clients_total=n_clients,
        client_requests_total=client_total,
        journal=tuple(JournalRow(j.at_ms, j.source, j.kind, j.detail) for j in journal[:200]),
        journal_counts=tuple(
            (qualified(name, src or "-"), kind, n)
            for name, rows in hosts
            for src, kind, n in rows.journal_counts
        ),
        read_gaps=tuple(
            sorted(
                (
                    dataclasses.replace(g, source=qualified(name, g.source or "-"))
                    for name, rows in hosts
                    for g in rows.read_gaps
                ),
                key=lambda g: g.at_ms,
            )
        ),
        inputs=tuple(
            InputRow(
                qualified(name, i.source), i.path, i.file_id, i.offset, i.size, i.updated_at_ms
            )
            for name, rows in hosts
            for i in rows.inputs
        ),
        meta=(),
    )


def control_hosts(findings: Sequence[FindingRow]) -> tuple[ControlHosts, ...]:
    """Per control, the hosts with a finding that fails it and those with one to review."""
    fail: dict[str, set[str]] = {}
    review: dict[str, set[str]] = {}
    for f in findings:
        for cid, outcome in finding_outcomes(f).items():
            (fail if outcome == "fail" else review).setdefault(cid, set()).add(f.host)
        for tag in f.controls:  # controls the catalogue does not know keep their own row
            if resolve_tag(tag) is None:
                review.setdefault(tag.strip(), set()).add(f.host)
    ids = sorted(set(fail) | set(review))
    return tuple(
        ControlHosts(
            cid,
            tuple(sorted(fail.get(cid, set()))),
            tuple(sorted(review.get(cid, set()) - fail.get(cid, set()))),
        )
        for cid in ids
    )


def _settings(name: str, rows: ReportRows) -> tuple[SourceSetting, ...]:
    """Every source a store knows is expected to deliver data: a silent one is a gap."""
    return tuple(
        SourceSetting(qualified(name, s.source), s.path or "", s.format or "auto")
        for s in rows.sources
    )


def _stores_text(hosts: Sequence[HostRows]) -> str:
    """The cover's "Store" line: file names only (paths and hashes are in Appendix C)."""
    files = [h.store.replace("\\", "/").rsplit("/", 1)[-1] for h in hosts]
    listed = ", ".join(files[:8]) + (f" and {len(files) - 8} more" if len(files) > 8 else "")
    return f"{len(hosts)} stores, each opened read-only: {listed} (paths and SHA-256 in Appendix C)"


def fleet_report_data(
    hosts: Sequence[HostRows],
    *,
    generated_at: datetime,
    options: ReportOptions,
    ruleset: RulesetInfo,
) -> ReportData:
    """The fleet report: the one-store report over the merged rows, plus each host's part."""
    names = host_names(hosts)
    named = [(n, h.rows) for (n, _), h in zip(names, hosts, strict=True)]
    merged = merge_rows(named, options.top_n)
    settings = tuple(s for n, rows in named for s in _settings(n, rows))
    merged_options = dataclasses.replace(
        options,
        sources=settings,
        store=_stores_text(hosts),
    )
    data = build_report_data(
        merged, generated_at=generated_at, options=merged_options, ruleset=ruleset
    )
    views = tuple(
        HostView(
            name=name,
            name_from=origin,
            store=clean(h.store, 200),
            sha256=h.sha256,
            size=h.size,
            modified=h.modified,
            changed=h.changed,
            findings=len(h.rows.findings),
            findings_digest=findings_digest(h.rows.findings),
            requests=sum(p.requests for p in h.rows.periods),
            completeness=build_completeness(
                h.rows,
                _settings("", h.rows),
                options.gap_minutes,
            ),
        )
        for (name, origin), h in zip(names, hosts, strict=True)
    )
    failed = {c.id for c in data.controls if c.result is Result.FAIL}
    per_control = tuple(
        c if c.control_id in failed else ControlHosts(c.control_id, (), _union(c.review, c.failing))
        for c in control_hosts(merged.findings)
    )
    scope = data.meta.scope or f"All sources of {len(hosts)} hosts, one store each"
    return dataclasses.replace(
        data,
        meta=dataclasses.replace(data.meta, scope=clean(scope, 400)),
        verdict=f"{data.verdict} {_fleet_verdict(views, per_control)}",
        fleet=Fleet(hosts=views, controls=per_control),
    )


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(a) | set(b)))


def _fleet_verdict(hosts: Sequence[HostView], controls: Sequence[ControlHosts]) -> str:
    """Which hosts the failed controls fail on, most failures first."""
    per_host = Counter(h for c in controls for h in c.failing)
    if not per_host:
        return f"No control fails on any of the {len(hosts)} hosts."
    ranked = sorted(per_host.items(), key=lambda kv: (-kv[1], kv[0]))
    listed = ", ".join(f"{h} ({n})" for h, n in ranked)
    return f"Controls not met, by host of {len(hosts)}: {listed}."
