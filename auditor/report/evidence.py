"""The evidence pages: findings in detail, personal data and secrets in URLs, activity charts.

Every value shown here came from a log line: it is printed through ``layout.para``/``esc``
only, and it is already masked (PANs at most first 6 and last 4, e-mails ``j***@...``).
"""

from __future__ import annotations

from typing import Any

from reportlab.lib.units import mm
from reportlab.platypus import KeepTogether, Spacer

from auditor.report.charts import bar_chart, bucket_labels
from auditor.report.data import FindingView, ReportData
from auditor.report.layout import (
    Heading,
    cols,
    esc,
    grid,
    head,
    iso,
    num,
    para,
    plain,
    rich,
    right,
    short,
)
from auditor.report.style import BAR, BAR_ALERT, SEVERITY_FILL, fonts, styles


def _finding_block(f: FindingView, w: float) -> KeepTogether:
    """One finding as a two-column block; short values are plain strings (cheap to lay out)."""
    st = styles()
    widths = cols(w, 36, 138)
    title = (
        f"<b>{esc(f.severity.upper())}</b> \u00b7 {esc(f.title)} "
        f"<font size=6.5>({esc(f.rule_id)}, finding {esc(f.id, secret_safe=False)})</font>"
    )
    events = num(f.count) + (
        f"; {num(f.distinct_values)} distinct value(s)" if f.distinct_values else ""
    )
    facts: list[tuple[str, Any]] = [
        ("First / last seen", f"{iso(f.first_seen)} / {iso(f.last_seen)}"),
        ("Events", events),
        *([("Host", plain(f.host, widths[1]))] if f.host else []),
        ("Client / source", plain(f"{f.client} / {f.source}", widths[1])),
        ("Evidence (masked)", para(f.evidence, st.mono, 400)),
        ("Controls", para(", ".join(f.controls) or "-", st.cell, 600)),
        ("Recommended action", para(f.action, st.cell, 500)),
        ("Status", plain(f.status, widths[1])),
    ]
    if f.pii_type:
        facts.insert(3, ("Type", plain(f.pii_type, widths[1])))
    rows: list[list[Any]] = [[rich(title, st.cell), ""]]
    rows += [[k, v] for k, v in facts]
    fill = SEVERITY_FILL.get(f.severity)
    extra: list[tuple[Any, ...]] = [
        ("SPAN", (0, 0), (1, 0)),
        ("FONT", (0, 1), (0, -1), fonts().bold, st.cell.fontSize, st.cell.leading),
    ]
    if fill is not None:
        extra.append(("BACKGROUND", (0, 0), (1, 0), fill))
    t = grid(rows, widths, header=False, extra=extra, fast=True)
    return KeepTogether([t, Spacer(1, 3 * mm)])


def _small_cols(*columns: int) -> list[tuple[Any, ...]]:
    """Smaller type for date columns of plain tables, below the header row."""
    st = styles()
    return [
        ("FONT", (c, 1), (c, -1), fonts().regular, st.cell_small.fontSize, st.cell_small.leading)
        for c in columns
    ]


def _seen(f: FindingView) -> str:
    """First to last seen in one line when on one day, else on two."""
    a, b = f.first_seen, f.last_seen
    if a.date() == b.date():
        return f"{a:%Y-%m-%d %H:%M}\u2013{b:%H:%MZ}"
    return f"{short(a)} \u2013\n{short(b)}"


def _listed_with_host(d: ReportData, w: float) -> Any:
    """The one-line findings of a fleet report, with the host each came from."""
    rows: list[list[Any]] = [
        head("Severity", "Host", "Rule", "Seen (UTC)", "Events", "Client", "Finding")
    ]
    widths = cols(w, 16, 20, 39, 31, 13, 25, 30)
    rows += [
        [
            plain(f.severity, widths[0]),
            plain(f.host, widths[1]),
            plain(f.rule_id, widths[2]),
            _seen(f),
            num(f.count),
            plain(f.client, widths[5]),
            plain(f.id, widths[6], secret_safe=False),
        ]
        for f in d.listed
    ]
    return grid(rows, widths, align_right=(4,), fast=True, extra=_small_cols(3))


def findings(d: ReportData, w: float) -> list[Any]:
    st = styles()
    out: list[Any] = [Heading("4  Findings in detail")]
    if not d.findings_total:
        out.append(para("No findings in the period.", st.body))
        return out
    full, listed = len(d.findings), len(d.listed)
    intro = f"{num(d.findings_total)} finding(s) in the period, most severe first."
    if listed or d.omitted:
        intro += f" The first {full} are shown in full"
        intro += f", the next {listed} one per line" if listed else ""
        intro += ", the rest counted by rule" if d.omitted else ""
        intro += (
            f". `log-auditor findings --since {iso(d.meta.start)} --until {iso(d.meta.end)}` "
            "lists every one."
        )
    out.append(para(intro, st.body, 600))
    out += [_finding_block(f, w) for f in d.findings]
    if d.listed:
        out.append(Heading("Further findings", 1))
        if d.fleet is not None:
            out.append(_listed_with_host(d, w))
        else:
            rows: list[list[Any]] = [
                head("Severity", "Rule", "First seen", "Last seen", "Events", "Client", "Finding")
            ]
            widths = cols(w, 15, 37, 26, 26, 13, 26, 31)
            rows += [
                [
                    plain(f.severity, widths[0]),
                    plain(f.rule_id, widths[1]),
                    short(f.first_seen),
                    short(f.last_seen),
                    num(f.count),
                    plain(f.client, widths[5]),
                    plain(f.id, widths[6], secret_safe=False),
                ]
                for f in d.listed
            ]
            out.append(grid(rows, widths, align_right=(4,), fast=True, extra=_small_cols(2, 3)))
    if d.omitted:
        out.append(Heading("Remaining findings by rule", 1))
        rows = [head("Rule", "Title", "Highest severity", "Findings", "Events")]
        widths = cols(w, 42, 72, 22, 18, 20)
        rows += [
            [
                plain(t.rule_id, widths[0]),
                plain(t.title, widths[1]),
                plain(t.severity, widths[2]),
                num(t.findings),
                num(t.events),
            ]
            for t in d.omitted
        ]
        out.append(grid(rows, widths, align_right=(3, 4), fast=True))
    return out


def exposures(d: ReportData, w: float) -> list[Any]:
    st = styles()
    out: list[Any] = [Heading("5  Personal data and secrets in URLs")]
    if not d.exposures:
        out.append(para("No personal data or secrets were found in URLs in the period.", st.body))
        return out
    totals = ", ".join(f"{t}: {num(n)}" for t, n in d.exposure_types)
    out.append(
        para(
            f"Distinct values by type (counted by keyed hash; no value is stored or shown): "
            f"{totals}.",
            st.body,
            600,
        )
    )
    rows: list[list[Any]] = [
        head(
            "Type",
            "Where",
            "Route",
            "Parameter",
            "Distinct values",
            "Requests",
            "First seen",
            "Last seen",
        )
    ]
    widths = cols(w, 17, 12, 38, 20, 14, 16, 28, 29)
    rows += [
        [
            plain(e.pii_type, widths[0]),
            plain(e.location, widths[1]),
            plain(e.route, widths[2]),
            plain(e.param, widths[3]),
            num(e.distinct_values),
            num(e.occurrences),
            short(e.first),
            short(e.last),
        ]
        for e in d.exposures[:200]
    ]
    out.append(grid(rows, widths, align_right=(4, 5), fast=True, extra=_small_cols(6, 7)))
    if len(d.exposures) > 200:
        out.append(para(f"... and {len(d.exposures) - 200} more rows.", st.caption))
    return out


def _chart(
    title: str,
    question: str,
    values: tuple[int, ...],
    d: ReportData,
    w: float,
    y: str,
    alert: bool = False,
) -> list[Any]:
    st = styles()
    a = d.activity
    total = sum(values)
    if not total:
        return [Heading(title, 1), para(f"None in the period: {question}", st.body)]
    labels, x_title = bucket_labels(a.starts, a.bucket_minutes)
    peak = max(values)
    peak_at = a.starts[values.index(peak)]
    color = BAR_ALERT if alert else BAR
    drawing = bar_chart(values, labels, x_title=x_title, y_title=y, width=w, color=color)
    caption = (
        f"{question} Total {num(total)}; peak {num(peak)} in the bucket starting {short(peak_at)}."
    )
    return [KeepTogether([Heading(title, 1), drawing, para(caption, st.caption, 400)])]


def _unit(minutes: int) -> str:
    if minutes % 1440 == 0:
        return "day" if minutes == 1440 else f"{minutes // 1440} days"
    if minutes % 60 == 0:
        return "hour" if minutes == 60 else f"{minutes // 60} hours"
    return f"{minutes} min"


def activity(d: ReportData, w: float) -> list[Any]:
    st = styles()
    a = d.activity
    per = _unit(a.bucket_minutes)
    out: list[Any] = [Heading("6  Activity")]
    out += _chart(
        "Requests over time",
        "How much traffic did the sources log?",
        a.requests,
        d,
        w,
        f"Requests per {per}",
    )
    out += _chart(
        "Failed authentication over time",
        "When did clients get 401 or 403 responses?",
        a.auth_failures,
        d,
        w,
        f"401/403 responses per {per}",
        alert=True,
    )
    out += _chart(
        "New findings over time",
        "When did findings start?",
        a.new_findings,
        d,
        w,
        f"Findings per {per}",
        alert=True,
    )
    out.append(Heading("Top clients by requests", 1))
    if not a.top_clients:
        out.append(para("No client addresses in the period.", st.body))
        return out
    rows: list[list[Any]] = [head("#", "Client", "Requests", "Share")]
    rows += [
        [
            right(str(i)),
            para(c.client, st.mono),
            right(num(c.requests)),
            right(f"{100 * c.share:.1f}%"),
        ]
        for i, c in enumerate(a.top_clients, start=1)
    ]
    total = sum(c.requests for c in a.top_clients) + a.other_requests
    if a.other_clients:
        share = a.other_requests / total if total else 0.0
        rows.append(
            [
                para(""),
                para(f"Other ({num(a.other_clients)} clients)"),
                right(num(a.other_requests)),
                right(f"{100 * share:.1f}%"),
            ]
        )
    rows.append(
        [
            para(""),
            para(f"All {num(a.clients_total)} clients", st.cell_bold),
            right(num(total), True),
            right("100.0%", True),
        ]
    )
    note = para(
        "Clients are counted per hour across all sources."
        + (" Addresses are pseudonymised." if d.meta.pseudonymised else ""),
        st.caption,
    )
    table = grid(rows, [10 * mm, 80 * mm, 30 * mm, 24 * mm], align_right=(0, 2, 3))
    out.append(KeepTogether([table, note]))
    return out
