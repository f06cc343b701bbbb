"""The outputs' part of the Prometheus text: counters per output (label ``output``)."""

from __future__ import annotations

from collections.abc import Mapping

from auditor.outputs.delivery import OutputStats

_FAMILIES: tuple[tuple[str, str, str, str], ...] = (
    ("output_delivered_total", "counter", "delivered", "Findings delivered by the output."),
    ("output_failures_total", "counter", "failed", "Delivery attempts that failed (retried)."),
    ("output_dropped_total", "counter", "dropped", "Findings skipped: max_queue was exceeded."),
    ("output_pending", "gauge", "pending", "Findings waiting in the store for the output."),
    ("output_up", "gauge", "up", "1 when the output's last attempt succeeded."),
)


def render_outputs(stats: Mapping[str, OutputStats]) -> str:
    """Prometheus text exposition lines (empty without outputs)."""
    if not stats:
        return ""
    out: list[str] = []
    for metric, kind, attr, help_ in _FAMILIES:
        out.append(f"# HELP log_auditor_{metric} {help_}")
        out.append(f"# TYPE log_auditor_{metric} {kind}")
        for name in sorted(stats):
            value = getattr(stats[name], attr)
            out.append(f'log_auditor_{metric}{{output="{_escape(name)}"}} {int(value)}')
    return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
