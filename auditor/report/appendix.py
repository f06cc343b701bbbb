"""The back of the report: method, limitations, rules, glossary, sign-off, integrity.

Boilerplate goes last (anchor criterion 11): the reader meets results first.
"""

from __future__ import annotations

from typing import Any

from reportlab.lib.units import mm
from reportlab.platypus import CondPageBreak, KeepTogether, Spacer

from auditor.report import fleet_pages
from auditor.report.data import ReportData, RuleInfo
from auditor.report.layout import Heading, cols, grid, head, iso, num, para, rich
from auditor.report.style import styles
from auditor.report.wording import GLOSSARY

GENERAL_LIMITS = (
    (
        "Access logs record requests, not what the application did with them: request bodies, "
        "response bodies and response headers (HSTS, cookies) are not visible."
    ),
    (
        "Behind a proxy or load balancer the client address is the proxy's unless the source "
        "logs the forwarded address."
    ),
    (
        "Per-client counts are kept per hour and exposures per UTC day; a period that does not "
        "start or end on such a boundary includes the whole hour or day there."
    ),
    (
        "Findings are episodes: a finding active in the period counts with all its events, also "
        "those just outside the period."
    ),
    "Line counters (read, parsed, unparsed) are totals since the store was created.",
    (
        "Journal records and the detection time of findings use the host's clock; every other "
        "time is the log's own timestamp, in UTC."
    ),
)


def _rules(rules: tuple[RuleInfo, ...], w: float) -> list[Any]:
    if not rules:
        return []
    rows: list[list[Any]] = [head("Rule", "Category", "Severity", "Title")]
    rows += [[para(r.id), para(r.category), para(r.severity), para(r.title)] for r in rules]
    return [Heading("Active rules", 1), grid(rows, cols(w, 52, 34, 16, 72))]


def method(d: ReportData, w: float, rules: tuple[RuleInfo, ...]) -> list[Any]:
    st, m = styles(), d.meta
    out: list[Any] = [CondPageBreak(80 * mm), Heading("Appendix A  Method and limitations")]
    paras = (
        (
            "log-auditor reads each source's access log as it is written (or once, with `scan`), "
            "parses every line with the source's format, masks personal data and secrets before "
            "anything is stored, and runs the ruleset's detectors over the events in log-time "
            "order. The store keeps counts per source and minute, per client and hour, and per "
            "exposure and day. This report reads those aggregates and the findings; it never "
            "reads individual events."
        ),
        (
            f"Results follow the control catalogue {m.catalogue_version}: one row per control with "
            "the finding categories that are evidence against it and whether access logs can "
            "show it at all. A control passes only when the logs fully cover the check, a loaded "
            "rule tests it, no finding is open and the data has no gap longer than "
            f"{m.gap_minutes} minutes."
        ),
        (
            "The previous period, used for every change column, is the period of the same length "
            "immediately before this one."
        ),
    )
    out += [para(t, st.body, 800) for t in paras]
    out += _rules(rules, w)
    out.append(Heading("What each source's format cannot show", 1))
    srcs = d.completeness.sources
    if srcs:
        rows: list[list[Any]] = [head("Source", "Format", "Not in the log")]
        rows += [[para(s.name), para(s.format), para(s.cannot_show, st.cell, 500)] for s in srcs]
        out.append(grid(rows, cols(w, 34, 30, 110)))
    out.append(Heading("General limitations", 1))
    out += [para(f"\u2022 {t}", st.body, 600) for t in GENERAL_LIMITS]
    out.append(Heading("Glossary", 1))
    rows = [[para(k, st.cell_bold), para(v, st.cell, 400)] for k, v in GLOSSARY]
    out.append(grid(rows, cols(w, 34, 140), header=False))
    return out


def signoff(d: ReportData, w: float) -> list[Any]:
    st = styles()
    line = "_" * 40
    rows: list[list[Any]] = [
        [para("Reviewer (name, role)", st.cell_bold), para(line)],
        [para("Date of review", st.cell_bold), para(line)],
        [
            para("Decision", st.cell_bold),
            para("[ ] accepted   [ ] accepted with exceptions   [ ] not accepted"),
        ],
        [
            para("Exceptions and follow-up (PCI DSS 10.4.3)", st.cell_bold),
            rich("<br/><br/><br/>", st.cell),
        ],
        [para("Signature", st.cell_bold), rich("<br/><br/>" + line, st.cell)],
    ]
    return [
        KeepTogether(
            [
                Heading("Appendix B  Review and sign-off"),
                para(
                    "This record is the evidence of the daily log review (PCI DSS 10.4.1). "
                    f"Report {d.meta.report_id}.",
                    st.body,
                ),
                grid(rows, cols(w, 52, 122), header=False),
            ]
        )
    ]


def integrity(d: ReportData, w: float) -> list[Any]:
    st, i = styles(), d.integrity
    prev = i.previous
    facts = [
        ("Report ID", d.meta.report_id),
        ("Findings digest", f"SHA-256 {i.findings_digest} over {num(d.findings_total)} findings"),
        ("Control catalogue", f"{d.meta.catalogue_version}, SHA-256 {i.catalogue_hash}"),
        ("Ruleset", f"{d.meta.ruleset_version}, SHA-256 {i.ruleset_hash or 'n/a'}"),
        (
            "Previous report",
            f"{prev.file}, SHA-256 {prev.sha256}; manifest entry {prev.entry}"
            if prev
            else "none: this report starts the chain in its directory",
        ),
    ]
    rows: list[list[Any]] = [
        [para(k, st.cell_bold), para(v, st.mono, 400, secret_safe=False)] for k, v in facts
    ]
    out: list[Any] = [
        Spacer(1, 4 * mm),
        Heading("Appendix C  Integrity"),
        para(
            "The SHA-256 of this PDF is written beside it (<file>.sha256) and chained to the "
            "previous report in the directory's manifest.jsonl, so a missing, replaced or "
            "edited report is detectable: run `log-auditor report verify DIR`. The findings "
            "digest is the SHA-256 over one line 'id|rule_id|first_seen_ms|last_seen_ms|count' "
            "per finding, sorted by id.",
            st.body,
            800,
        ),
        grid(rows, cols(w, 34, 140), header=False),
    ]
    out += fleet_pages.stores(d, w)
    if i.inputs:
        out.append(Heading("Input files", 1))
        trows: list[list[Any]] = [
            head("Source", "File", "Fingerprint (first line)", "Read to byte")
        ]
        trows += [
            [
                para(x.source),
                para(x.path, st.mono),
                para(x.file_id, st.mono, secret_safe=False),
                para(num(x.offset)),
            ]
            for x in i.inputs
        ]
        out.append(grid(trows, cols(w, 26, 70, 52, 26)))
        out.append(
            para(
                "A file is known by a SHA-256 fingerprint of its first line, so a rotated or "
                f"renamed file keeps its identity. Positions as of {iso(d.meta.generated_at)}.",
                st.caption,
            )
        )
    return out
