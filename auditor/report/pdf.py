"""ReportData → PDF bytes with reportlab platypus. The only module that draws pages.

Page order follows the anchors' acceptance criteria: cover and verdict, scope and data
completeness, summary, control matrix, findings, exposures, activity, then the appendices
(method and limitations, sign-off, integrity). Every page carries a footer with the report
id, the period, "page n of N" and the generator version; the total is known only at the
end, so the canvas keeps each page until ``save`` and draws the footers then.
"""

from __future__ import annotations

import io
from typing import Any

from reportlab.lib.pagesizes import A4, LETTER
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import BaseDocTemplate, CondPageBreak, Frame, PageTemplate

from auditor.report import appendix, evidence, fleet_pages, sections
from auditor.report.data import ReportData, RuleInfo
from auditor.report.layout import Heading
from auditor.report.style import MUTED, RULE, fonts

MARGIN = 18 * mm
FOOTER_Y = 10 * mm


def _footer_text(d: ReportData) -> tuple[str, str]:
    m = d.meta
    left = f"Report {m.report_id} \u00b7 {m.start:%Y-%m-%dT%H:%MZ} to {m.end:%Y-%m-%dT%H:%MZ}"
    return left, m.generator


def _canvas_class(left: str, gen: str) -> type[Canvas]:
    """A canvas that holds its pages until ``save`` so each footer can say "of N"."""
    f = fonts()

    class FooterCanvas(Canvas):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._held: list[dict[str, Any]] = []

        def showPage(self) -> None:  # reportlab's name
            self._held.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._held)
            for n, state in enumerate(self._held, start=1):
                self.__dict__.update(state)
                self._draw_footer(n, total)
                super().showPage()
            super().save()

        def _draw_footer(self, n: int, total: int) -> None:
            w, _ = self._pagesize
            self.saveState()
            self.setStrokeColor(RULE)
            self.setLineWidth(0.4)
            self.line(MARGIN, FOOTER_Y + 9, w - MARGIN, FOOTER_Y + 9)
            self.setFillColor(MUTED)
            self.setFont(f.regular, 7)
            self.drawString(MARGIN, FOOTER_Y, left)
            self.drawRightString(w - MARGIN, FOOTER_Y, f"Page {n} of {total} \u00b7 {gen}")
            self.restoreState()

    return FooterCanvas


class _Doc(BaseDocTemplate):  # type: ignore[misc]
    def afterFlowable(self, flowable: Any) -> None:  # reportlab's name
        """Section headings become PDF bookmarks."""
        if isinstance(flowable, Heading):
            key = f"h{id(flowable)}"
            self.canv.bookmarkPage(key)
            self.canv.addOutlineEntry(flowable.outline_text, key, level=flowable.outline_level)


def _no_orphan_headings(story: list[Any]) -> list[Any]:
    """A heading starts a new page when less than its ``room`` is left below it.

    Not ``keepWithNext``: that keeps a heading with the *whole* next table and leaves
    half-empty pages before long tables; a table may split, a heading may not be last.
    """
    out: list[Any] = []
    for item in story:
        if isinstance(item, Heading):
            out.append(CondPageBreak(item.room))
        out.append(item)
    return out


def render_pdf(data: ReportData, rules: tuple[RuleInfo, ...] = ()) -> bytes:
    """The whole report as PDF bytes (the caller writes them atomically)."""
    fonts()  # register once before any style is built
    size = LETTER if data.meta.paper.lower() == "letter" else A4
    buf = io.BytesIO()
    m = data.meta
    doc = _Doc(
        buf,
        pagesize=size,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN + 6 * mm,
        title=f"Compliance report {m.start:%Y-%m-%d} to {m.end:%Y-%m-%d}",
        author=m.organisation,
        subject=f"Report {m.report_id}",
        creator=m.generator,
        pageCompression=1,
    )
    frame = Frame(doc.leftMargin, doc.bottomMargin, doc.width, doc.height, id="body")
    doc.addPageTemplates([PageTemplate(id="page", frames=[frame])])
    w = doc.width
    story: list[Any] = []
    story += sections.cover(data, w)
    if data.fleet is not None:
        story += fleet_pages.completeness(data, w)
    else:
        story += sections.completeness(data, w)
    story += sections.summary(data, w)
    story += sections.matrix(data, w)
    story += evidence.findings(data, w)
    story += evidence.exposures(data, w)
    story += evidence.activity(data, w)
    story += appendix.method(data, w, rules)
    story += appendix.signoff(data, w)
    story += appendix.integrity(data, w)
    story = _no_orphan_headings(story)
    left, gen = _footer_text(data)
    doc.build(story, canvasmaker=_canvas_class(left, gen))
    return buf.getvalue()
