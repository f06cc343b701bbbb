"""The parts of the PDF that only a fleet report has: hosts, per-host completeness, stores.

Like ``sections``, each function lays out what ``data.fleet`` decided and computes nothing.
The one-host report never calls these.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Spacer

from auditor.report.completeness import SourceView
from auditor.report.layout import Heading, band, cols, esc, grid, head, iso, num, para, rich, right
from auditor.report.readgaps import read_gap_table
from auditor.report.style import BAND_BG, styles
from auditor.report.views import ControlHosts, Fleet, HostView, ReportData

MAX_NAMED_HOSTS = 6  # in a control-matrix cell; the rest are counted


def names(hosts: tuple[str, ...], limit: int = MAX_NAMED_HOSTS) -> str:
    more = f" and {len(hosts) - limit} more" if len(hosts) > limit else ""
    return ", ".join(hosts[:limit]) + more


def hosts_line(f: Fleet) -> str:
    """The cover's line: how many hosts and which."""
    return f"{len(f.hosts)}: " + ", ".join(h.name for h in f.hosts)


def control_note(c: ControlHosts | None) -> str:
    """Mark-up for the result cell of the control matrix: on which hosts."""
    if c is None:
        return ""
    out = ""
    if c.failing:
        out += f"<br/><font size=6.5><b>Fails on:</b> {esc(names(c.failing))}</font>"
    if c.review:
        out += f"<br/><font size=6.5>Review on: {esc(names(c.review))}</font>"
    return out


def _host_state(h: HostView) -> str:
    c = h.completeness
    if not any(s.requests for s in c.sources):
        return "no data in the period"
    if c.gap_count:
        return f"{c.gap_count} gap(s)"
    return "no gaps"


def _host_row(h: HostView) -> list[Any]:
    st = styles()
    srcs = len(h.completeness.sources)
    text = (
        f"<b>{esc(h.name)}</b>&nbsp;&nbsp;<font size=6.8>store {esc(h.store.rsplit('/', 1)[-1])} "
        f"(name from the {esc(h.name_from)}) \u00b7 {srcs} source(s) \u00b7 "
        f"{num(h.requests)} requests \u00b7 {num(h.findings)} finding(s) \u00b7 "
        f"{esc(_host_state(h))}</font>"
    )
    return [rich(text, st.cell), *([""] * 8)]


@cache
def _right() -> ParagraphStyle:
    return ParagraphStyle("fleet_cell_r", parent=styles().cell, alignment=TA_RIGHT)


def _journal(s: SourceView) -> str:
    """Rotations since the store began; then what the journal recorded in the period."""
    period = [
        (s.rotations, "rotation(s)"),
        (s.resumes, "resume(s)"),
        (s.errors, "error(s)"),
        (s.silences, "silence(s)"),
        (s.read_gaps, "read gap(s)"),
    ]
    said = ", ".join(f"{n} {what}" for n, what in period if n)
    return num(s.rotations_total) + (
        f"<br/><font size=6>in period: {esc(said)}</font>" if said else ""
    )


def _source_row(s: SourceView) -> list[Any]:
    st = styles()
    pct = f"<br/><font size=6>{100 * s.lines_unparsed / s.lines_read:.2f}%</font>"
    where = f"{esc(s.path)} \u00b7 {esc(s.format)}"
    if s.last_error:
        where += f"<br/>last error: {esc(s.last_error)}"
    return [
        rich(f'{esc(s.name)}<br/><font size=6.2 color="#555555">{where}</font>', st.cell),
        rich(f"{num(s.requests)}<br/><font size=6>prev. {num(s.prev_requests)}</font>", _right()),
        right(num(s.lines_read)),
        right(num(s.lines_parsed)),
        rich(num(s.lines_unparsed) + (pct if s.lines_read else ""), _right()),
        para(iso(s.first).replace("T", " "), st.cell_small),
        para(iso(s.last).replace("T", " "), st.cell_small),
        right(num(len(s.gaps))),
        rich(_journal(s), _right()),
    ]


def completeness(d: ReportData, w: float) -> list[Any]:
    """Section 1 of a fleet report: the fleet's statement, then one row group per host."""
    st, f = styles(), d.fleet
    assert f is not None
    c = d.completeness
    out: list[Any] = [Heading("1  Scope and data completeness")]
    n_src = sum(len(h.completeness.sources) for h in f.hosts)
    lead = f"{len(f.hosts)} hosts, {n_src} sources. "
    out.append(band([para(lead + c.statement, st.verdict, 1500)], w))
    out.append(Spacer(1, 3 * mm))
    out.append(Heading("Completeness per host", 1, room=60 * mm))
    rows: list[list[Any]] = [
        head(
            "Host / source",
            "Requests",
            "Read",
            "Parsed",
            "Unparsed",
            "First event",
            "Last event",
            "Gaps",
            "Rotations",
        )
    ]
    extra: list[tuple[Any, ...]] = []
    for h in f.hosts:
        i = len(rows)
        rows.append(_host_row(h))
        extra += [
            ("SPAN", (0, i), (-1, i)),
            ("BACKGROUND", (0, i), (-1, i), BAND_BG),
            ("LINEABOVE", (0, i), (-1, i), 0.6, st.cell.textColor),
        ]
        if not h.completeness.sources:
            rows.append([para("No source has been registered in this store.", st.cell_small)])
            rows[-1] += [""] * 8
            extra.append(("SPAN", (0, i + 1), (-1, i + 1)))
        rows += [_source_row(s) for s in h.completeness.sources]
        # A host's rows stay on one page with their heading row (unless longer than a page).
        extra.append(("NOSPLIT", (0, i), (-1, len(rows) - 1)))
    widths = cols(w, 46, 16, 14, 14, 17, 19, 19, 10, 19)
    out.append(grid(rows, widths, extra=extra, align_right=(2, 3, 7)))
    out.append(
        para(
            "Requests, first and last event come from the per-minute aggregates of the period "
            "(prev.: the period before). Lines and rotations are running totals since each "
            "store was created; journal records in the period (rotations, resumes, errors, "
            "read gaps) "
            "are counted by each host's wall clock. Every source a store knows is expected to "
            "deliver data: one that did not shows as a gap.",
            st.caption,
            600,
        )
    )
    out += read_gap_table(d, w)  # its sources named host/source
    gaps = [(h.name, g) for h in f.hosts for g in h.completeness.gaps]
    if gaps:
        out.append(Heading(f"Stretches without data longer than {d.meta.gap_minutes} minutes", 1))
        grows: list[list[Any]] = [head("Host", "Source", "From", "To", "Minutes")]
        grows += [
            [para(n), para(g.source), para(iso(g.start)), para(iso(g.end)), right(num(g.minutes))]
            for n, g in gaps[:80]
        ]
        out.append(grid(grows, cols(w, 32, 48, 38, 38, 18), align_right=(4,)))
        if len(gaps) > 80:
            out.append(para(f"... and {len(gaps) - 80} more.", st.caption))
    journal = [(h.name, s, k, n) for h in f.hosts for s, k, n in h.completeness.journal_counts]
    if journal:
        out.append(Heading("Operational journal in the period", 1))
        jrows: list[list[Any]] = [head("Host", "Source", "Record", "Count")]
        jrows += [[para(h), para(s), para(k), right(num(n))] for h, s, k, n in journal[:60]]
        out.append(grid(jrows, cols(w, 40, 56, 56, 22), align_right=(3,)))
    return out


def stores(d: ReportData, w: float) -> list[Any]:
    """Appendix C's table of the input stores: each file's SHA-256 as it was read."""
    st, f = styles(), d.fleet
    if f is None:
        return []
    rows: list[list[Any]] = [head("Host", "Store file", "Size, modified", "SHA-256")]
    for h in f.hosts:
        digests = (
            f"<font size=6.3>store {esc(h.sha256, secret_safe=False)}<br/>"
            f"findings {esc(h.findings_digest, secret_safe=False)}</font>"
        )
        state = f"{num(h.size)} bytes<br/>{h.modified:%Y-%m-%d}<br/>{h.modified:%H:%M:%S}Z"
        if h.changed:
            state += "<br/><b>changed while read</b>"
        rows.append(
            [
                rich(
                    f"<b>{esc(h.name)}</b><br/><font size=6.5>{num(h.findings)} finding(s)</font>",
                    st.cell,
                ),
                para(h.store, st.mono, 200),
                rich(state, st.cell_small),
                rich(digests, st.mono),
            ]
        )
    return [
        Heading("Input stores", 1),
        para(
            "Each host's store was opened read-only (SQLite immutable, or read-only beside a "
            "live write-ahead log) and never migrated or written. The store SHA-256 is of the "
            "file as it was before it was read; the findings SHA-256 is the findings digest "
            "of that host alone, re-computable with `log-auditor findings --db FILE --json`.",
            st.body,
            800,
        ),
        grid(rows, cols(w, 20, 32, 20, 102)),
    ]
