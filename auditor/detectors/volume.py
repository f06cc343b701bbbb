"""Request volume per client (or route) and bucket of log time, against a learned baseline
(OWASP API4/API6): robust statistics, a floor so quiet clients never alarm, fixed
ceilings, and "heavy load but never a 429".

Buckets are global (a minute by default): per event the detector only bumps a counter,
and all the per-key work happens once per bucket, when log time enters the next one. A
key that reached half the floor keeps the counts of its last ``history`` buckets; quiet
keys keep nothing and are judged against the floor alone, which bounds memory. The
limit of a busy key for a bucket is ``max(floor, median + z * MAD / 0.6745)`` (the
modified z-score of Iglewicz and Hoaglin; if MAD is 0, 1.2533 × the mean absolute
deviation), once it has ``min_history`` buckets. Crossing a limit emits a hit with the
bucket's count (``first_seen`` = the bucket's start); further requests in that bucket
emit count-1 hits. Events that arrive late count toward the current bucket.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from operator import attrgetter
from statistics import median
from typing import Any

from auditor.detectors.base import Env, StatefulDetector, make_hit
from auditor.detectors.fields import EventView
from auditor.detectors.params import format_duration
from auditor.model import Event, Hit
from auditor.rules import Rule


def baseline_limit(hist: list[int] | None, floor: int, z: float, min_history: int) -> int:
    """The count above which a bucket is anomalous for a key with this history."""
    if hist is None or len(hist) < min_history:
        return floor
    med = median(hist)
    dev = [abs(x - med) for x in hist]
    mad = median(dev)
    scale = mad / 0.6745 if mad > 0 else 1.2533 * (sum(dev) / len(dev))
    if scale <= 0:
        scale = max(1.0, 0.1 * med)
    return max(floor, math.ceil(med + z * scale))


class Group:
    """The volume rules that count the same key (``by``)."""

    def __init__(self, by: str, rules: list[Rule]) -> None:
        self.by = by
        self.rules = rules
        self.get: Callable[[Event], Any] = (
            attrgetter(by)
            if by in Event.__dataclass_fields__
            else (lambda ev: EventView(ev, 0.0).get(by))
        )
        self.modes = [r.params["mode"] for r in rules]
        baselines = [r for r in rules if r.params["mode"] == "baseline"]
        self.history = max((r.params["history"] for r in baselines), default=0)
        self.busy_mark = min((r.params["floor"] for r in baselines), default=0) / 2
        self.max_keys = min(r.params["max_keys"] for r in rules)
        self.limited_statuses = frozenset().union(*(r.params["limited_statuses"] for r in rules))
        self.default_limits = self.limits_for(None)
        self.min_limit = min(self.default_limits)
        self.counts: dict[str, int] = {}
        self.hist: dict[str, list[int]] = {}
        self.limits: dict[str, list[int]] = {}
        self.limited: set[str] = set()
        self.fired: dict[str, int] = {}

    def limits_for(self, hist: list[int] | None) -> list[int]:
        out = []
        for rule, mode in zip(self.rules, self.modes, strict=True):
            p = rule.params
            if mode == "baseline":
                out.append(baseline_limit(hist, p["floor"], p["z"], p["min_history"]))
            elif mode == "ceiling":
                out.append(p["ceiling"])
            else:
                out.append(p["heavy"] - 1)
        return out

    def roll(self, gap: int) -> None:
        """Close the current bucket (``gap`` buckets passed): histories, then limits."""
        counts, hist, size = self.counts, self.hist, self.history
        if size:
            for k, h in hist.items():
                h.append(counts.get(k, 0))
                if gap > 1:
                    h.extend([0] * min(gap - 1, size))
                if len(h) > size:
                    del h[: len(h) - size]
            mark = self.busy_mark
            for k, c in counts.items():
                if c >= mark and k not in hist:
                    hist[k] = [c]
            quiet = [k for k, h in hist.items() if max(h) < mark]
            for k in quiet:
                del hist[k]
            self.limits = {k: self.limits_for(h) for k, h in hist.items()}
        counts.clear()
        self.limited.clear()
        self.fired.clear()

    def check(self, det: VolumeDetector, ev: Event, key: str, count: int, env: Env) -> list[Hit]:
        hits: list[Hit] = []
        limits = self.limits.get(key) or self.default_limits
        for i, rule in enumerate(self.rules):
            if count <= limits[i]:
                continue
            if self.modes[i] == "no-429" and key in self.limited:
                continue
            if det.allowed(rule, env):
                continue
            bit = 1 << i
            span = format_duration(det.bucket)
            extra = f"[{count} requests in {span} by {self.by}, limit {limits[i]}]"
            fired = self.fired.get(key, 0)
            if fired & bit:
                hits.append(make_hit(rule, ev, key, 1, None, extra=extra))
            else:
                self.fired[key] = fired | bit
                first = det.current * det.bucket
                hits.append(make_hit(rule, ev, key, count, first, extra=extra))
        return hits

    def dump(self) -> list[Any]:
        return [
            list(self.counts.items()),
            list(self.hist.items()),
            sorted(self.limited),
            list(self.fired.items()),
        ]

    def load(self, data: list[Any]) -> None:
        self.counts = {str(k): int(v) for k, v in data[0]}
        self.hist = {str(k): [int(x) for x in v] for k, v in data[1]}
        self.limits = {k: self.limits_for(h) for k, h in self.hist.items()}
        self.limited = {str(k) for k in data[2]}
        self.fired = {str(k): int(v) for k, v in data[3]}


class VolumeDetector(StatefulDetector):
    """All volume rules with one bucket size; one counter per key field."""

    name = "volume"

    def __init__(self, rules: list[Rule], bucket: float) -> None:
        super().__init__(rules)
        self.bucket = bucket
        by: dict[str, list[Rule]] = {}
        for rule in rules:
            by.setdefault(rule.params["by"], []).append(rule)
        self.groups = [Group(field, group) for field, group in by.items()]
        self.limited_statuses = frozenset().union(*(g.limited_statuses for g in self.groups))
        self.current = -1  # index of the current bucket
        self.edge = -math.inf  # log time at which the next bucket starts

    @property
    def ident(self) -> str:
        return f"volume:{self.bucket:g}:{','.join(r.id for r in self.rules)}"

    def _roll(self, t: float) -> None:
        b = int(t // self.bucket)
        gap = b - self.current if self.current >= 0 else 1
        for g in self.groups:
            g.roll(gap)
        self.current = b
        self.edge = (b + 1) * self.bucket

    def observe(self, ev: Event, t: float, env: Env) -> list[Hit] | None:
        if t >= self.edge:
            self._roll(t)
        hits: list[Hit] | None = None
        limited = ev.status in self.limited_statuses
        for g in self.groups:
            k = g.get(ev)
            if k is None:
                continue
            counts = g.counts
            c = counts.get(k, 0) + 1
            if c == 1 and len(counts) >= g.max_keys:
                continue
            counts[k] = c
            if limited:
                g.limited.add(k)
            if c > g.min_limit:
                got = g.check(self, ev, str(k), c, env)
                if got:
                    hits = got if hits is None else hits + got
        return hits

    def dump(self) -> Any:
        return [self.current, [g.dump() for g in self.groups]]

    def load(self, data: Any) -> None:
        self.current = int(data[0])
        self.edge = (self.current + 1) * self.bucket if self.current >= 0 else -math.inf
        for g, gd in zip(self.groups, data[1], strict=False):
            g.load(gd)

    def explain(self, rule: Rule, view: EventView, env: Env) -> tuple[str, str]:
        g = next(g for g in self.groups if rule in g.rules)
        k = g.get(view.ev)
        if k is None:
            return ("no", f"event has no {g.by}")
        i = g.rules.index(rule)
        same = int(view.t // self.bucket) == self.current
        count = (g.counts.get(str(k), 0) if same else 0) + 1
        limits = g.limits.get(str(k)) or g.default_limits
        what = {"baseline": "baseline limit", "ceiling": "ceiling", "no-429": "heavy-load mark"}
        span = format_duration(self.bucket)
        return (
            "counts",
            (
                f"counts toward {rule.id} ({count} in this {span} by {g.by};"
                f" {what[g.modes[i]]} {limits[i] + 1})"
            ),
        )


def build(rules: list[Rule]) -> list[StatefulDetector]:
    by_bucket: dict[float, list[Rule]] = {}
    for rule in rules:
        by_bucket.setdefault(rule.params["bucket"], []).append(rule)
    return [VolumeDetector(group, bucket) for bucket, group in by_bucket.items()]
