"""The front of the report: cover and verdict, scope and completeness, summary, control matrix.

Each function takes the finished ``ReportData`` and the frame width and returns flowables;
nothing here computes a result, it only lays out what ``data`` decided.
"""

from __future__ import annotations

import logging
from typing import Any

from reportlab.lib.units import mm
from reportlab.platypus import Image, KeepTogether, PageBreak, Spacer

from auditor.report import fleet_pages
from auditor.report.assess import RESULT_ORDER, ControlResult, Result
from auditor.report.controls import FRAMEWORKS
from auditor.report.data import ReportData
from auditor.report.layout import (
    Heading,
    band,
    cols,
    delta,
    esc,
    grid,
    head,
    iso,
    num,
    para,
    rich,
    right,
    short,
)
from auditor.report.readgaps import read_gap_table
from auditor.report.style import RESULT_FILL, RESULT_LABEL, SEVERITY_FILL, badge, styles, symbol

log = logging.getLogger(__name__)


def _logo(path: str | None) -> list[Any]:
    if not path:
        return []
    try:
        img = Image(path)
        ratio = img.imageWidth / max(1, img.imageHeight)
        h = 16 * mm
        w = min(60 * mm, h * ratio)
        img.drawWidth, img.drawHeight = w, w / ratio
        img.hAlign = "LEFT"
        return [img, Spacer(1, 4 * mm)]
    except (OSError, ValueError) as exc:  # a missing or broken logo must not cost the report
        log.warning("logo %s not used: %s", path, exc)
        return []


def _framework_table(d: ReportData, w: float) -> Any:
    rows: list[list[Any]] = [head("Framework", *(badge(r) for r in RESULT_ORDER))]
    extra = []
    for i, fw in enumerate(d.frameworks, start=1):
        counts = dict(fw.counts)
        rows.append([para(fw.name), *(right(num(counts[r])) for r in RESULT_ORDER)])
        for j, r in enumerate(RESULT_ORDER, start=1):
            if counts[r] and r is not Result.NA:
                extra.append(("BACKGROUND", (j, i), (j, i), RESULT_FILL[r]))
    cw = (w - 62 * mm) / 4
    return grid(rows, [62 * mm, cw, cw, cw, cw], extra=extra)


def cover(d: ReportData, w: float) -> list[Any]:
    st, m = styles(), d.meta
    facts = [
        ("Period (UTC)", f"{iso(m.start)} to {iso(m.end)} (start inclusive, end exclusive)"),
        ("Report", f"scheduled job '{m.job}'" if m.job else "on demand"),
        ("Scope", m.scope or "All sources in the store"),
        ("Generated", iso(m.generated_at)),
        ("Report ID", m.report_id),
        ("Generator", m.generator),
        (
            "Ruleset",
            f"{m.ruleset_version}; SHA-256 {m.ruleset_hash or 'n/a'}"
            if not m.ruleset_error
            else f"not loaded: {m.ruleset_error}",
        ),
        ("Control mapping", f"catalogue {m.catalogue_version}, SHA-256 {m.catalogue_hash}"),
        ("Query", m.query),
        ("Store", m.store or "-"),
        *([("Hosts", fleet_pages.hosts_line(d.fleet))] if d.fleet else []),
        (
            "Client addresses",
            "pseudonymised (HMAC-SHA256, key kept with the store)"
            if m.pseudonymised
            else "shown as logged",
        ),
    ]
    # Our own values (ids, hashes, config): a hash must not be mistaken for a card number.
    rows = [[para(k, st.cell_bold), para(v, max_len=400, secret_safe=False)] for k, v in facts]
    out: list[Any] = [*_logo(m.logo)]
    out += [
        para(m.organisation, st.subtitle),
        rich("API access-log compliance report", st.title),
        rich(esc(" \u00b7 ".join(fw.name for fw in FRAMEWORKS)), st.subtitle),
        grid(rows, [32 * mm, w - 32 * mm], header=False),
        Spacer(1, 5 * mm),
        band([rich("Verdict", st.h2), para(d.verdict, st.verdict, 600)], w),
        Spacer(1, 4 * mm),
        _framework_table(d, w),
        Spacer(1, 4 * mm),
        band(
            [
                rich("Data completeness", st.h2),
                para(d.completeness.statement, st.body, 900),
            ],
            w,
        ),
        PageBreak(),
    ]
    return out


def completeness(d: ReportData, w: float) -> list[Any]:
    st, c = styles(), d.completeness
    out: list[Any] = [Heading("1  Scope and data completeness")]
    out.append(band([para(c.statement, st.verdict, 1500)], w))
    out.append(Spacer(1, 3 * mm))
    if not c.sources:
        out.append(para("No source has been registered in the store.", st.body))
        return out
    rows: list[list[Any]] = [
        head("Source", "Format", "Requests", "Previous", "Data from", "Data to", "Gaps", "Journal")
    ]
    for s in c.sources:
        journal = f"{s.rotations} rotations, {s.resumes} resumes, {s.errors} errors"
        if s.silences:
            journal += f", {s.silences} silences"
        if s.read_gaps:
            journal += f", {s.read_gaps} read gaps"
        rows.append(
            [
                rich(f"{esc(s.name)}<br/><font size=6.5>{esc(s.path)}</font>", st.cell),
                para(s.format),
                right(num(s.requests)),
                right(num(s.prev_requests)),
                para(short(s.first)),
                para(short(s.last)),
                right(num(len(s.gaps))),
                para(journal, st.cell_small),
            ]
        )
    out.append(grid(rows, cols(w, 38, 22, 17, 17, 22, 22, 10, 26), align_right=(2, 3, 6)))
    out.append(
        para(
            "Requests come from per-minute aggregates of the period; journal records are "
            "counted by wall-clock time.",
            st.caption,
        )
    )
    out += read_gap_table(d, w)
    out.append(Heading("Lines read since the store was created", 1))
    rows = [head("Source", "Read", "Parsed", "Unparsed", "Truncated", "Rotations", "Last error")]
    for s in c.sources:
        pct = f" ({100 * s.lines_unparsed / s.lines_read:.2f}%)" if s.lines_read else ""
        rows.append(
            [
                para(s.name),
                right(num(s.lines_read)),
                right(num(s.lines_parsed)),
                right(num(s.lines_unparsed) + pct),
                right(num(s.lines_truncated)),
                right(num(s.rotations_total)),
                para(s.last_error or "-", st.cell_small),
            ]
        )
    out.append(grid(rows, cols(w, 32, 19, 19, 26, 19, 19, 40), align_right=(1, 2, 3, 4, 5)))
    out.append(
        para(
            "Line counters are running totals: an unparsed line has no trustworthy timestamp, "
            "so it cannot be placed in a period.",
            st.caption,
        )
    )
    if c.gaps:
        out.append(Heading(f"Stretches without data longer than {d.meta.gap_minutes} minutes", 1))
        rows = [head("Source", "From", "To", "Minutes")]
        rows += [
            [para(g.source), para(iso(g.start)), para(iso(g.end)), right(num(g.minutes))]
            for g in c.gaps[:60]
        ]
        out.append(grid(rows, [60 * mm, 45 * mm, 45 * mm, 24 * mm], align_right=(3,)))
        if c.gap_count > 60:
            out.append(para(f"... and {c.gap_count - 60} more.", st.caption))
    if c.journal_counts:
        out.append(Heading("Operational journal in the period", 1))
        rows = [head("Source", "Record", "Count")]
        rows += [[para(s), para(k), right(num(n))] for s, k, n in c.journal_counts[:40]]
        out.append(grid(rows, [60 * mm, 60 * mm, 24 * mm], align_right=(2,)))
    return out


def summary(d: ReportData, w: float) -> list[Any]:
    st = styles()
    out: list[Any] = [Heading("2  Summary")]
    if d.findings_total == 0:
        out.append(
            band(
                [
                    para(
                        "No findings in the period. Every active rule was applied to the "
                        "data described in section 1; the control matrix shows what that "
                        "covers and what access logs cannot show.",
                        st.verdict,
                        600,
                    )
                ],
                w,
            )
        )
    else:
        out.append(Heading("Top risks", 1))
        out += [para(f"{i}. {t}", st.body, 600) for i, t in enumerate(d.top_risks, start=1)]
    out.append(Heading("Findings by severity", 1))
    rows: list[list[Any]] = [head("Severity", "Findings", "Previous period", "Change", "Events")]
    extra = []
    for i, s in enumerate(d.severities, start=1):
        rows.append(
            [
                para(s.severity.capitalize()),
                right(num(s.findings)),
                right(num(s.prev_findings)),
                right(delta(s.prev_findings, s.findings)),
                right(num(s.events)),
            ]
        )
        if s.findings:
            extra.append(("BACKGROUND", (0, i), (0, i), SEVERITY_FILL.get(s.severity, None)))
    rows.append(
        [
            para("Total", st.cell_bold),
            right(num(d.findings_total), True),
            right(num(sum(s.prev_findings for s in d.severities)), True),
            right(delta(sum(s.prev_findings for s in d.severities), d.findings_total), True),
            right(num(d.events_total), True),
        ]
    )
    out.append(
        grid(
            rows,
            [50 * mm, 28 * mm, 32 * mm, 24 * mm, 30 * mm],
            extra=extra,
            align_right=(1, 2, 3, 4),
        )
    )
    if d.categories:
        out.append(Heading("Findings by category", 1))
        rows = [head("Category", "Findings", "Previous period", "Change", "Events")]
        rows += [
            [
                para(c.label),
                right(num(c.findings)),
                right(num(c.prev_findings)),
                right(delta(c.prev_findings, c.findings)),
                right(num(c.events)),
            ]
            for c in d.categories
        ]
        out.append(
            grid(rows, [50 * mm, 28 * mm, 32 * mm, 24 * mm, 30 * mm], align_right=(1, 2, 3, 4))
        )
    if d.breach_clock:
        out.append(Heading("GDPR Art. 33: 72-hour clock for high and critical findings", 1))
        rows = [head("Finding", "Severity", "Detected", "Deadline", "Acknowledged", "Status")]
        for b in d.breach_clock[:30]:
            status = "acknowledged" if b.acknowledged_at else ("OVERDUE" if b.overdue else "open")
            rows.append(
                [
                    rich(f"{esc(b.finding_id, secret_safe=False)} {esc(b.title)}", st.cell),
                    para(b.severity),
                    para(short(b.detected_at)),
                    para(short(b.deadline)),
                    para(short(b.acknowledged_at)),
                    para(status, st.cell_bold),
                ]
            )
        out.append(grid(rows, [58 * mm, 16 * mm, 27 * mm, 27 * mm, 27 * mm, 19 * mm]))
        out.append(
            para(
                "Detected is when log-auditor first recorded the finding. Whether a finding is a "
                "personal-data breach is for the reviewer to decide.",
                st.caption,
            )
        )
    out.append(Heading("Change against the previous period", 1))
    rows = [head("Measure", "Previous period", "This period", "Change")]
    rows += [
        [
            para(t.metric),
            right(num(t.previous)),
            right(num(t.current)),
            right(delta(t.previous, t.current)),
        ]
        for t in d.trend
    ]
    out.append(grid(rows, [60 * mm, 35 * mm, 35 * mm, 30 * mm], align_right=(1, 2, 3)))
    out.append(
        para(
            f"The previous period is the {_span(d)} immediately before this one, read from the "
            "same store.",
            st.caption,
        )
    )
    return out


def _span(d: ReportData) -> str:
    hours = (d.meta.end - d.meta.start).total_seconds() / 3600
    if hours % 24 == 0:
        days = int(hours // 24)
        return "day" if days == 1 else f"{days} days"
    return f"{hours:g} hours"


def _control_row(c: ControlResult, st: Any, hosts: str = "") -> list[Any]:
    ctrl = esc(c.ref if c.framework != "other" else c.id)
    if c.aliases:
        ctrl += (
            "<br/><font size=6.5>v3.2.1: "
            + esc(", ".join(a.split(":", 1)[1] for a in c.aliases))
            + "</font>"
        )
    req = f"<b>{esc(c.title)}</b><br/>{esc(c.summary)}<br/><i>Test:</i> {esc(c.test)}"
    if c.observed:
        req += f"<br/><i>Observed:</i> {esc(c.observed)}"
    if c.rules:
        more = f" and {len(c.rules) - 6} more" if len(c.rules) > 6 else ""
        rules = esc(", ".join(c.rules[:6]) + more, 600)
        req += f'<br/><font size=6.5 color="#555555">Rules: {rules}</font>'
    result = f"<b>{esc(badge(c.result))}</b><br/><font size=6.5>{esc(c.reason)}</font>{hosts}"
    evidence = f"{num(c.findings)}"
    if c.events:
        evidence += f"<br/><font size=6.5>{num(c.events)} events</font>"
    return [
        rich(ctrl, st.cell),
        rich(req, st.cell),
        rich(result, st.cell),
        rich(evidence, st.cell),
        para(delta(c.prev_findings, c.findings)),
    ]


def matrix(d: ReportData, w: float) -> list[Any]:
    st = styles()
    out: list[Any] = [Heading("3  Control matrix")]
    legend = "; ".join(
        f"{symbol(r)} {RESULT_LABEL[r]}: {text}"
        for r, text in (
            (Result.FAIL, "a finding shows it is not met"),
            (Result.REVIEW, "logs show something or only part of it; a person must judge"),
            (Result.PASS, "logs fully cover the check, no finding, data complete"),
            (Result.NA, "access logs cannot show it"),
        )
    )
    out.append(para(legend, st.small, 600))
    out.append(
        para(
            "Findings: findings in the period that are evidence for the control (with the "
            "events they cover). Change: findings against the previous period.",
            st.small,
        )
    )
    if d.fleet is not None:
        out.append(
            para(
                f"Over {len(d.fleet.hosts)} hosts: a control fails if a finding of any host shows "
                "it is not met; the result names the hosts it fails on and those with findings "
                "to review.",
                st.small,
                600,
            )
        )
    widths = cols(w, 19, 97, 28, 16, 14)
    groups = [(fw.key, fw.name) for fw in FRAMEWORKS] + [("other", "Other controls named by rules")]
    for key, name in groups:
        rows_c = [c for c in d.controls if c.framework == key]
        if not rows_c:
            continue
        counts = {r: sum(1 for c in rows_c if c.result is r) for r in RESULT_ORDER}
        out.append(Heading(name, 1, room=80 * mm))  # with the first, tall rows
        out.append(
            para(
                ", ".join(f"{counts[r]} {RESULT_LABEL[r].lower()}" for r in RESULT_ORDER),
                st.lead_in,
            )
        )
        rows: list[list[Any]] = [
            head("Control", "Requirement, test, observation, rules", "Result", "Findings", "Change")
        ]
        extra = []
        for i, c in enumerate(rows_c, start=1):
            hosts = fleet_pages.control_note(d.fleet.hosts_for(c.id)) if d.fleet else ""
            rows.append(_control_row(c, st, hosts))
            if c.result is not Result.NA:
                extra.append(("BACKGROUND", (2, i), (2, i), RESULT_FILL[c.result]))
        out.append(grid(rows, widths, extra=extra, align_right=(3, 4)))
    return out


def keep(*items: Any) -> KeepTogether:
    return KeepTogether(list(items))
