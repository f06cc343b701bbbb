"""Log silence (PCI DSS 10.7.2: failures of audit logging must be detected): a source whose
events stop. Detected in log time on the next event after the gap, so a backfill finds
the same silences as live tailing: a gap longer than ``max(min_gap, factor × the usual
gap)`` once the source has a history of ``min_events`` events. The usual gap is the
median of the average gaps of the last blocks of 128 events (cheap: one counter per
event).
"""

from __future__ import annotations

from collections import deque
from operator import sub
from statistics import median
from typing import Any

from auditor.detectors.base import Env, Hits, StatefulDetector, Stretch, make_hit, running_max
from auditor.detectors.fields import EventView
from auditor.detectors.params import format_duration
from auditor.model import Event, Hit
from auditor.rules import Rule

# State: [last_t, events, block_start, block_gaps, limit]
LAST, N, BLOCK, GAPS, LIMIT = range(5)
BLOCK_EVENTS = 128
_BLOCKS = 64


class SilenceDetector(StatefulDetector):
    name = "silence"
    columns = ("source",)

    def __init__(self, rule: Rule) -> None:
        super().__init__([rule])
        self.rule = rule
        p = rule.params
        self.min_gap: float = p["min_gap"]
        self.factor: float = p["factor"]
        self.min_events: int = p["min_events"]
        self.keys: dict[str, list[Any]] = {}

    def observe(self, ev: Event, t: float, env: Env) -> list[Hit] | None:
        return self.observe_one(ev, t, env)

    def observe_stretch(self, s: Stretch) -> Hits:
        """``observe`` over a stretch, with the current source's state in local variables."""
        if self._quiet_stretch(s):
            return []
        out: Hits = []
        events, ts, keys = s.events, s.ts, self.keys
        min_events = self.min_events
        src: str | None = None
        st: list[Any] = []
        last = limit = 0.0
        n = 0
        for i in range(s.lo, s.hi):
            ev = events[i]
            t = ts[i]
            if ev.source != src:
                if src is not None:
                    st[LAST], st[N] = last, n
                src = ev.source
                got = keys.get(src)
                if got is None:
                    got = keys[src] = [t, 1, t, deque(maxlen=_BLOCKS), self.min_gap]
                    st, last, n, limit = got, t, 1, self.min_gap
                    continue
                st, last, n, limit = got, got[LAST], got[N], got[LIMIT]
            if t > last:
                if t - last > limit and n >= min_events:
                    st[LAST], st[N] = last, n
                    hit = self._hit(ev, st, t - last, s.env(i))
                    if hit:
                        out.append((i, hit))
                last = t
            n += 1
            if n % BLOCK_EVENTS == 0:
                gaps = st[GAPS]
                gaps.append(max(0.0, t - st[BLOCK]) / BLOCK_EVENTS)
                st[BLOCK] = t
                st[LIMIT] = limit = max(self.min_gap, self.factor * median(gaps))
        if src is not None:
            st[LAST], st[N] = last, n
        return out

    def _quiet_stretch(self, s: Stretch) -> bool:
        """The usual case in C: one known source and no gap longer than ``min_gap`` (no
        limit is shorter), so no hit; counts and the block gaps are brought up to date.
        False (nothing done) otherwise."""
        lo, hi = s.lo, s.hi
        sources = set(s.column("source"))
        st = self.keys.get(sources.pop()) if len(sources) == 1 else None
        if st is None:
            return False
        times = s.ts[lo:hi]
        running = running_max(times, st[LAST])
        if max(map(sub, times, running)) > self.min_gap:
            return False
        n = st[N]
        first = (-n - 1) % BLOCK_EVENTS  # the first event that completes a block
        for t in times[first::BLOCK_EVENTS]:
            gaps = st[GAPS]
            gaps.append(max(0.0, t - st[BLOCK]) / BLOCK_EVENTS)
            st[BLOCK] = t
            st[LIMIT] = max(self.min_gap, self.factor * median(gaps))
        st[LAST], st[N] = running[-1], n + len(times)
        return True

    def _hit(self, ev: Event, st: list[Any], gap: float, env: Env) -> list[Hit] | None:
        if self.allowed(self.rule, env):
            return None
        usual = median(st[GAPS]) if st[GAPS] else 0.0
        extra = (
            f"[no events from source {ev.source} for {format_duration(round(gap))};"
            f" usual gap {usual:.3g}s]"
        )
        return [make_hit(self.rule, ev, ev.source, 1, st[LAST], extra=extra, client_ip=None)]

    def dump(self) -> Any:
        return [
            [k, [st[LAST], st[N], st[BLOCK], list(st[GAPS]), st[LIMIT]]]
            for k, st in self.keys.items()
        ]

    def load(self, data: Any) -> None:
        self.keys = {}
        for k, st in data:
            gaps = deque((float(x) for x in st[3]), maxlen=_BLOCKS)
            self.keys[str(k)] = [float(st[0]), int(st[1]), float(st[2]), gaps, float(st[4])]

    def explain(self, rule: Rule, view: EventView, env: Env) -> tuple[str, str]:
        st = self.keys.get(view.ev.source)
        if st is None:
            return ("no", "first event of this source")
        gap = view.t - st[LAST]
        return (
            "no",
            (
                f"gap since the previous event {max(gap, 0):.0f}s; fires above"
                f" {format_duration(round(st[LIMIT]))} once the source has {self.min_events} events"
            ),
        )


def build(rules: list[Rule]) -> list[StatefulDetector]:
    return [SilenceDetector(r) for r in rules]
