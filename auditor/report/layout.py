"""Small building blocks for the report's pages: safe paragraphs, tables, headings, times.

``para`` is the only way a string from a log reaches the page: it goes through
``text.markup`` (scrubbed, cleaned, escaped, drawable). ``rich`` takes our own mark-up and
is used only with constant text or values passed through ``esc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import Flowable, Paragraph, Table, TableStyle

from auditor.report.style import BAND_BG, HEAD_BG, RULE, fonts, styles
from auditor.report.text import clean, markup


def esc(value: object, max_len: int = 300, *, secret_safe: bool = True) -> str:
    """A value for interpolation into ``rich`` mark-up: escaped and drawable.

    ``secret_safe=False`` only for our own identifiers (finding ids, hashes), which the
    secret masks could mistake for a card number.
    """
    return markup(value, max_len=max_len, can_draw=fonts().can_draw, secret_safe=secret_safe)


def para(
    value: object, style: Any = None, max_len: int = 300, *, secret_safe: bool = True
) -> Paragraph:
    """A paragraph of untrusted text: nothing in it is interpreted as mark-up."""
    return Paragraph(esc(value, max_len, secret_safe=secret_safe), style or styles().cell)


def rich(trusted_markup: str, style: Any = None) -> Paragraph:
    return Paragraph(trusted_markup, style or styles().body)


class Heading(Paragraph):  # type: ignore[misc]
    """A section title that also becomes a PDF bookmark (level 0 or 1)."""

    def __init__(self, text: str, level: int = 0, room: float = 40 * mm) -> None:
        st = styles()
        super().__init__(esc(text), st.h1 if level == 0 else st.h2)
        self.outline_text = text
        self.outline_level = level
        self.room = room  # start a new page when less than this is left below


def iso(dt: datetime | None) -> str:
    """``2026-11-20T08:00:00Z``; the report's one way to print an instant."""
    return "-" if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def short(dt: datetime | None) -> str:
    """``2026-11-20 08:00Z``, for dense tables."""
    return "-" if dt is None else dt.strftime("%Y-%m-%d %H:%MZ")


def cols(width: float, *mm_widths: float) -> list[float]:
    """Column widths given in millimetres of an A4 frame (174 mm), scaled to ``width``."""
    return [x * width / 174 for x in mm_widths]


def num(n: int) -> str:
    return f"{n:,}"


def delta(prev: int, cur: int) -> str:
    d = cur - prev
    return "0" if d == 0 else f"{d:+,}"


def plain(value: object, width: float, *, secret_safe: bool = True) -> str:
    """Untrusted text for a ``fast`` table cell of ``width`` points: no mark-up, one line,
    cut with "..." to fit (measured in the cell font)."""
    f, size = fonts(), styles().cell.fontSize
    s = "".join(ch if f.can_draw(ch) else "?" for ch in clean(value, 200, secret_safe=secret_safe))
    room = width - 6  # cell padding
    if stringWidth(s, f.regular, size) <= room:
        return s
    while s and stringWidth(s + "...", f.regular, size) > room:
        s = s[: max(0, min(len(s) - 1, int(len(s) * room / stringWidth(s, f.regular, size))))]
    return s + "..."


def grid(
    rows: Sequence[Sequence[Any]],
    widths: Sequence[float],
    *,
    header: bool = True,
    extra: Sequence[tuple[Any, ...]] = (),
    align_right: Sequence[int] = (),
    fast: bool = False,
) -> Table:
    """A table for paper: thin rules, a shaded header row repeated on every page.

    ``fast``: string cells stay strings (drawn without wrapping or mark-up, about ten times
    cheaper than paragraphs); they must come from ``plain`` and fit their column.
    """
    if fast:
        cells = [list(row) for row in rows]
    else:
        cells = [[c if isinstance(c, Flowable) else para(c) for c in row] for row in rows]
    t = Table(cells, colWidths=list(widths), repeatRows=1 if header else 0, hAlign="LEFT")
    f, st = fonts(), styles()
    cmds: list[tuple[Any, ...]] = [
        ("FONT", (0, 0), (-1, -1), f.regular, st.cell.fontSize, st.cell.leading),
        ("TEXTCOLOR", (0, 0), (-1, -1), st.cell.textColor),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, RULE),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
    ]
    if header:
        cmds += [
            ("BACKGROUND", (0, 0), (-1, 0), HEAD_BG),
            ("LINEABOVE", (0, 0), (-1, 0), 0.5, RULE),
        ]
    cmds.extend(("ALIGN", (i, 0), (i, -1), "RIGHT") for i in align_right)
    cmds.extend(extra)
    t.setStyle(TableStyle(cmds))
    return t


def head(*labels: str) -> list[Paragraph]:
    return [Paragraph(esc(lab), styles().cell_head) for lab in labels]


@cache
def _right_style(bold: bool) -> ParagraphStyle:
    base = styles().cell_bold if bold else styles().cell
    return ParagraphStyle(base.name + "_r", parent=base, alignment=TA_RIGHT)


def right(text: str, bold: bool = False) -> Paragraph:
    """A right-aligned number cell."""
    return Paragraph(esc(text), _right_style(bold))


def band(flowables: list[Any], width: float, fill: colors.Color = BAND_BG) -> Table:
    """A shaded box around one or more paragraphs (the verdict, a statement)."""
    t = Table([[flowables]], colWidths=[width], hAlign="LEFT")
    t.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), fill),
                ("BOX", (0, 0), (-1, -1), 0.6, RULE),
                ("LEFTPADDING", (0, 0), (-1, -1), 8),
                ("RIGHTPADDING", (0, 0), (-1, -1), 8),
                ("TOPPADDING", (0, 0), (-1, -1), 6),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
            ]
        )
    )
    return t
