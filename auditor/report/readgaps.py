"""The read gaps found in the period, as a table for section 1 (one store or a fleet).

A read gap is log data the daemon knows it missed (``auditor.readgap``); what is known of
each (the file, the offset, the bytes lost where known) is in its journal record's text.
"""

from __future__ import annotations

from typing import Any

from auditor.report.layout import Heading, cols, grid, head, para, short
from auditor.report.style import styles
from auditor.report.views import ReportData

MAX_ROWS = 60

CAPTION = (
    "A read gap is log data log-auditor knows it missed and can no longer read: a file "
    "truncated (copytruncate) before its end was read, with no rotated copy of the unread "
    "part beside it, or a rotated compressed archive that ended unfinished (its compressor "
    "stopped, or the file is damaged) with no copy of its rest. Offsets are bytes into the "
    "file (into the decompressed text for a .gz). Listed by when log-auditor found them "
    "(wall-clock time), which may be after the lost lines were written."
)


def read_gap_table(d: ReportData, w: float) -> list[Any]:
    """Nothing when the period has no read gap."""
    st, c = styles(), d.completeness
    if not c.read_gap_count:
        return []
    rows: list[list[Any]] = [head("Found", "Source", "What was not read")]
    rows += [
        [para(short(g.at)), para(g.source), para(g.detail, st.cell_small, 600)]
        for g in c.read_gaps[:MAX_ROWS]
    ]
    out: list[Any] = [Heading("Log data not read (read gaps)", 1), grid(rows, cols(w, 27, 27, 120))]
    if c.read_gap_count > MAX_ROWS:
        out.append(para(f"... and {c.read_gap_count - MAX_ROWS} more.", st.caption))
    out.append(para(CAPTION, st.caption, 600))
    return out
