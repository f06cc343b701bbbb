"""Fonts, paragraph styles and the result badges of the PDF.

DejaVu Sans is embedded (as a subset) when the system has it: it draws the status symbols
and most scripts a user agent or path can contain. Without it the core Helvetica and
Courier are used and the symbols fall back to ASCII; characters a font cannot draw print
as ``?`` either way, so no string from a log can break the rendering.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont

from auditor.report.assess import Result
from auditor.report.text import latin1

log = logging.getLogger(__name__)

FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
    Path("/usr/share/fonts/dejavu-sans-fonts"),
    Path("/usr/local/share/fonts"),
    Path("/Library/Fonts"),
)
_FILES = {
    "LA-Sans": "DejaVuSans.ttf",
    "LA-Sans-Bold": "DejaVuSans-Bold.ttf",
    "LA-Sans-Oblique": "DejaVuSans-Oblique.ttf",
    "LA-Mono": "DejaVuSansMono.ttf",
}

INK = colors.HexColor("#1A1A1A")
MUTED = colors.HexColor("#555555")
RULE = colors.HexColor("#9A9A9A")
HEAD_BG = colors.HexColor("#E4E8EE")
BAND_BG = colors.HexColor("#F2F4F7")
BAR = colors.HexColor("#4A6A8A")
BAR_ALERT = colors.HexColor("#8A4A3A")


@dataclass(frozen=True, slots=True)
class Fonts:
    regular: str
    bold: str
    italic: str
    mono: str
    can_draw: Callable[[str], bool]
    unicode: bool


def _drawable(glyphs: frozenset[int]) -> Callable[[str], bool]:
    return lambda ch: ord(ch) in glyphs


@cache
def fonts() -> Fonts:
    """Register DejaVu once per process if found, else use the core fonts."""
    for d in FONT_DIRS:
        paths = {name: d / file for name, file in _FILES.items()}
        if not all(p.is_file() for p in paths.values()):
            continue
        try:
            faces = {}
            for name, p in paths.items():
                f = TTFont(name, str(p))
                pdfmetrics.registerFont(f)
                faces[name] = f
            pdfmetrics.registerFontFamily(
                "LA-Sans",
                normal="LA-Sans",
                bold="LA-Sans-Bold",
                italic="LA-Sans-Oblique",
                boldItalic="LA-Sans-Bold",
            )
        except (OSError, TTFError) as exc:  # a broken font file must not stop a report
            log.warning("cannot use the fonts in %s: %s", d, exc)
            continue
        glyphs = frozenset(faces["LA-Sans"].face.charToGlyph) & frozenset(
            faces["LA-Mono"].face.charToGlyph
        )
        return Fonts(
            "LA-Sans",
            "LA-Sans-Bold",
            "LA-Sans-Oblique",
            "LA-Mono",
            _drawable(glyphs),
            True,
        )
    return Fonts("Helvetica", "Helvetica-Bold", "Helvetica-Oblique", "Courier", latin1, False)


_SYMBOLS = {
    Result.FAIL: ("\u2717", "x"),
    Result.REVIEW: ("\u26a0", "!"),
    Result.PASS: ("\u2713", "+"),
    Result.NA: ("\u2013", "-"),
}
RESULT_LABEL = {
    Result.FAIL: "Fail",
    Result.REVIEW: "Needs review",
    Result.PASS: "Pass",
    Result.NA: "Not assessable",
}
# Light fills so black text stays readable in greyscale; the text and symbol carry the meaning.
RESULT_FILL = {
    Result.FAIL: colors.HexColor("#F2B8B0"),
    Result.REVIEW: colors.HexColor("#F9E3A3"),
    Result.PASS: colors.HexColor("#CBE6D1"),
    Result.NA: colors.HexColor("#FFFFFF"),
}
SEVERITY_FILL = {
    "critical": colors.HexColor("#E8A09A"),
    "high": colors.HexColor("#F2C4B0"),
    "medium": colors.HexColor("#F9E3A3"),
    "low": colors.HexColor("#E4E8EE"),
}


def symbol(result: Result) -> str:
    uni, ascii_ = _SYMBOLS[result]
    return uni if fonts().unicode else ascii_


def badge(result: Result) -> str:
    """``✗ Fail``: symbol and word, so the result survives greyscale and colour blindness."""
    return f"{symbol(result)} {RESULT_LABEL[result]}"


@dataclass(frozen=True, slots=True)
class Styles:
    title: ParagraphStyle
    subtitle: ParagraphStyle
    h1: ParagraphStyle
    h2: ParagraphStyle
    body: ParagraphStyle
    small: ParagraphStyle
    lead_in: ParagraphStyle  # a line that belongs to the table after it
    cell: ParagraphStyle
    cell_bold: ParagraphStyle
    cell_head: ParagraphStyle
    cell_small: ParagraphStyle
    mono: ParagraphStyle
    verdict: ParagraphStyle
    caption: ParagraphStyle


@cache
def styles() -> Styles:
    f = fonts()

    def ps(name: str, size: float, lead: float, **kw: object) -> ParagraphStyle:
        base: dict[str, object] = {
            "fontName": f.regular,
            "textColor": INK,
            "alignment": TA_LEFT,
            "splitLongWords": 1,
            "uriWasteReduce": 0.3,
        }
        base.update(kw)
        return ParagraphStyle(name, fontSize=size, leading=lead, **base)

    return Styles(
        title=ps("title", 20, 24, fontName=f.bold, spaceAfter=4),
        subtitle=ps("subtitle", 10.5, 14, textColor=MUTED, spaceAfter=10),
        h1=ps("h1", 14, 18, fontName=f.bold, spaceBefore=6, spaceAfter=6),
        h2=ps("h2", 11, 14, fontName=f.bold, spaceBefore=8, spaceAfter=4),
        body=ps("body", 9, 12, spaceAfter=4),
        small=ps("small", 7.5, 9.5, textColor=MUTED, spaceAfter=3),
        lead_in=ps("lead_in", 7.5, 9.5, textColor=MUTED, spaceAfter=3),
        cell=ps("cell", 7.8, 9.6),
        cell_bold=ps("cell_bold", 7.8, 9.6, fontName=f.bold),
        cell_head=ps("cell_head", 7, 8.6, fontName=f.bold),
        cell_small=ps("cell_small", 6.8, 8.4, textColor=MUTED),
        mono=ps("mono", 7.2, 9, fontName=f.mono),
        verdict=ps("verdict", 10.5, 14, fontName=f.bold),
        caption=ps("caption", 7.5, 9.5, textColor=MUTED, spaceBefore=2, spaceAfter=8),
    )
