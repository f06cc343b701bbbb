"""Log silence (PCI DSS 10.7.2: failures of audit logging must be detected): a source whose
events stop. Detected by log time on the next event after the gap, so a backfill finds
the same silences as live tailing: a gap longer than ``max(min_gap, factor × the usual gap)``
once the source has a history of ``min_events`` events.
"""

from __future__ import annotations

from collections import deque
from statistics import median
from typing import Any

from auditor.detectors.base import Env, StatefulDetector, make_hit
from auditor.detectors.fields import EventView
from auditor.detectors.params import format_duration
from auditor.model import Event, Hit
from auditor.rules import Rule

# State: [last_t, events, gaps, usual_gap, since_recompute]
LAST, N, GAPS, USUAL, SINCE = range(5)
_RING = 255
_RECOMPUTE = 64


class SilenceDetector(StatefulDetector):
    name = "silence"

    def __init__(self, rule: Rule) -> None:
        super().__init__([rule])
        self.rule = rule
        p = rule.params
        self.min_gap: float = p["min_gap"]
        self.factor: float = p["factor"]
        self.min_events: int = p["min_events"]
        self.keys: dict[str, list[Any]] = {}

    def limit(self, st: list[Any]) -> float:
        return max(self.min_gap, self.factor * st[USUAL])

    def observe(self, ev: Event, t: float, env: Env) -> list[Hit] | None:
        src = ev.source
        st = self.keys.get(src)
        if st is None:
            self.keys[src] = [t, 1, deque(maxlen=_RING), 0.0, 0]
            return None
        gap = t - st[LAST]
        st[N] += 1
        if gap < 0:
            return None
        hit = None
        if st[N] > self.min_events and gap > self.limit(st):
            hit = self._hit(ev, st, gap, env)
        st[LAST] = t
        st[GAPS].append(gap)
        st[SINCE] += 1
        if st[SINCE] >= _RECOMPUTE:
            st[SINCE] = 0
            st[USUAL] = median(st[GAPS])
        return hit

    def _hit(self, ev: Event, st: list[Any], gap: float, env: Env) -> list[Hit] | None:
        if self.allowed(self.rule, env):
            return None
        extra = (
            f"[no events from source {ev.source} for {format_duration(round(gap))};"
            f" usual gap {st[USUAL]:.3g}s]"
        )
        return [make_hit(self.rule, ev, ev.source, 1, st[LAST], extra=extra, client_ip=None)]

    def dump(self) -> Any:
        return [[k, [st[LAST], st[N], list(st[GAPS]), st[USUAL], st[SINCE]]] for k, st in self.keys.items()]

    def load(self, data: Any) -> None:
        self.keys = {}
        for k, st in data:
            gaps = deque((float(x) for x in st[2]), maxlen=_RING)
            self.keys[str(k)] = [float(st[0]), int(st[1]), gaps, float(st[3]), int(st[4])]

    def explain(self, rule: Rule, view: EventView, env: Env) -> tuple[str, str]:
        st = self.keys.get(view.ev.source)
        if st is None:
            return ("no", "first event of this source")
        gap = view.t - st[LAST]
        return (
            "no",
            f"gap since the previous event {max(gap, 0):.0f}s; fires above"
            f" {format_duration(round(self.limit(st)))} after {self.min_events} events",
        )


def build(rules: list[Rule]) -> list[StatefulDetector]:
    return [SilenceDetector(r) for r in rules]
