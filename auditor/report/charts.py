"""Vector bar charts for paper: one question each, labelled axes with units, data labels.

A chart is drawn only when it has something to show; the caller prints one sentence
instead of an empty panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.shapes import Drawing, Group, String
from reportlab.lib.colors import Color

from auditor.report.style import BAR, INK, MUTED, fonts


def compact(n: float) -> str:
    """12 → "12", 12_345 → "12.3k", 2_500_000 → "2.5M"."""
    n = float(n)
    if abs(n) >= 1_000_000:
        return f"{n / 1_000_000:.1f}M".replace(".0M", "M")
    if abs(n) >= 10_000:
        return f"{n / 1000:.0f}k"
    if abs(n) >= 1000:
        return f"{n / 1000:.1f}k".replace(".0k", "k")
    return f"{n:.0f}"


def _per(minutes: int) -> str:
    if minutes % 60:
        return f"{minutes} minutes"
    return "hour" if minutes == 60 else f"{minutes // 60} hours"


def bucket_labels(starts: Sequence[datetime], minutes: int) -> tuple[list[str], str]:
    """Category labels and the x-axis title for buckets of ``minutes`` (UTC)."""
    if not starts:
        return [], "Time (UTC)"
    first, last = starts[0], starts[-1]
    if minutes >= 1440:
        same_month = (first.year, first.month) == (last.year, last.month)
        labels = [f"{s:%d}" if same_month else f"{s:%m-%d}" for s in starts]
        unit = "day" if minutes == 1440 else f"{minutes // 1440} days"
        title = f"Day (UTC), {first:%B %Y}" if same_month else "Date (UTC, month-day)"
        return labels, title + f"; one bar per {unit}"
    if minutes >= 60:
        if first.date() != last.date():
            labels = [f"{s:%a %d}" if s.hour == 0 or i == 0 else "" for i, s in enumerate(starts)]
            return labels, f"Day (UTC, label at 00:00); one bar per {_per(minutes)}"
        labels = [f"{s:%H}" for s in starts]
        return labels, f"Hour of {first:%Y-%m-%d} (UTC); one bar per {_per(minutes)}"
    labels = [
        f"{s:%H:%M}" if i % max(1, len(starts) // 12) == 0 else "" for i, s in enumerate(starts)
    ]
    return labels, f"Time (UTC); one bar per {minutes} min"


def bar_chart(
    values: Sequence[int],
    labels: Sequence[str],
    *,
    x_title: str,
    y_title: str,
    width: float,
    height: float = 150,
    color: Color = BAR,
) -> Drawing:
    """A vertical bar chart with axis titles, value labels and an integer y axis."""
    f = fonts()
    d = Drawing(width, height)
    left, bottom = 46, 34
    bc = VerticalBarChart()
    bc.x, bc.y = left, bottom
    bc.width, bc.height = width - left - 8, height - bottom - 16
    bc.data = [list(values)]
    bc.categoryAxis.categoryNames = list(labels)
    bc.categoryAxis.labels.fontName = f.regular
    bc.categoryAxis.labels.fontSize = 6
    bc.categoryAxis.labels.fillColor = INK
    bc.categoryAxis.labels.dy = -2
    bc.categoryAxis.tickDown = 2
    top = max(values) if values else 0
    bc.valueAxis.valueMin = 0
    bc.valueAxis.valueMax = max(1, top) * 1.18
    step = _nice_step(max(1, top) * 1.18 / 4)
    bc.valueAxis.valueStep = step
    bc.valueAxis.labelTextFormat = compact
    bc.valueAxis.labels.fontName = f.regular
    bc.valueAxis.labels.fontSize = 6
    bc.valueAxis.visibleGrid = True
    bc.valueAxis.gridStrokeColor = Color(0.85, 0.85, 0.85)
    bc.valueAxis.gridStrokeWidth = 0.3
    bc.bars[0].fillColor = color
    bc.bars[0].strokeColor = None
    bc.barSpacing = 1
    bc.groupSpacing = 2 if len(values) > 24 else 4
    bc.barLabelFormat = lambda v: compact(v) if v else ""
    bc.barLabels.fontName = f.regular
    bc.barLabels.fontSize = 5.5 if len(values) > 24 else 6
    bc.barLabels.fillColor = INK
    if len(values) > 16:
        bc.barLabels.angle = 90
        bc.barLabels.boxAnchor = "w"
        bc.barLabels.dy = 2
        bc.barLabels.dx = 0
    else:
        bc.barLabels.nudge = 6
    d.add(bc)
    d.add(
        String(
            left + bc.width / 2,
            4,
            x_title,
            fontName=f.regular,
            fontSize=7,
            fillColor=MUTED,
            textAnchor="middle",
        )
    )
    ylab = String(
        0, 0, y_title, fontName=f.regular, fontSize=7, fillColor=MUTED, textAnchor="middle"
    )
    g = Group(ylab)
    g.translate(9, bottom + bc.height / 2)
    g.rotate(90)
    d.add(g)
    return d


def _nice_step(raw: float) -> float:
    """A round axis step (1, 2 or 5 times a power of ten), at least 1."""
    if raw <= 1:
        return 1
    mag = 10 ** (len(str(int(raw))) - 1)
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return float(m * mag)
    return float(10 * mag)
