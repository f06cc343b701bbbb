"""Request volume per client (or route) and bucket of log time, against a learned baseline
(OWASP API4/API6): robust statistics, a floor so quiet clients never alarm, fixed
ceilings, and "heavy load but never a 429".

Per key, the detector counts requests in the current bucket (a minute by default) and
keeps the counts of the last ``history`` buckets once the key has been busy (reached half
the floor); quiet keys keep no history and are judged against the floor alone, which
bounds memory. The limit for a bucket is fixed when the bucket opens:
``max(floor, median + z * MAD / 0.6745)`` (the modified z-score of Iglewicz and Hoaglin;
if MAD is 0, 1.2533 × the mean absolute deviation). Crossing it emits a hit with the
bucket's count; further requests in that bucket emit count-1 hits.
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

# State per key: [bucket, count, limited, hist, fired, min_limit, limits, first_t]
B, COUNT, LIMITED, HIST, FIRED, MINLIM, LIMITS, FIRST = range(8)


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


class VolumeDetector(StatefulDetector):
    """All volume rules that share a key field and a bucket size."""

    name = "volume"

    def __init__(self, rules: list[Rule], by: str, bucket: float) -> None:
        super().__init__(rules)
        self.by = by
        self.bucket = bucket
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
        self.keys: dict[str, list[Any]] = {}
        self.default_limits = self._limits(None)
        self.default_min = min(self.default_limits)

    @property
    def ident(self) -> str:
        return f"volume:{self.by}:{self.bucket:g}:{','.join(r.id for r in self.rules)}"

    def _limits(self, hist: list[int] | None) -> list[int]:
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

    def _roll(self, st: list[Any], b: int, t: float) -> None:
        if self.history:
            hist = st[HIST] or []
            hist.append(st[COUNT])
            hist.extend([0] * min(b - st[B] - 1, self.history))
            if len(hist) > self.history:
                del hist[: len(hist) - self.history]
            st[HIST] = hist if max(hist) >= self.busy_mark else None
        st[B], st[COUNT], st[LIMITED], st[FIRED], st[FIRST] = b, 0, False, 0, t
        if st[HIST] is None:
            st[LIMITS], st[MINLIM] = None, self.default_min
        else:
            limits = self._limits(st[HIST])
            st[LIMITS], st[MINLIM] = limits, min(limits)

    def observe(self, ev: Event, t: float, env: Env) -> list[Hit] | None:
        k = self.get(ev)
        if k is None:
            return None
        b = int(t // self.bucket)
        st = self.keys.get(k)
        if st is None:
            if len(self.keys) >= self.max_keys:
                self._evict()
            st = self.keys[k] = [b, 0, False, None, 0, self.default_min, None, t]
        elif b > st[B]:
            self._roll(st, b, t)
        st[COUNT] += 1
        if ev.status in self.limited_statuses:
            st[LIMITED] = True
        if st[COUNT] <= st[MINLIM]:
            return None
        return self._check(ev, t, st, str(k), env)

    def _check(self, ev: Event, t: float, st: list[Any], key: str, env: Env) -> list[Hit] | None:
        hits: list[Hit] = []
        limits = st[LIMITS] or self.default_limits
        count = st[COUNT]
        for i, rule in enumerate(self.rules):
            if count <= limits[i]:
                continue
            if self.modes[i] == "no-429" and st[LIMITED]:
                continue
            if self.allowed(rule, env):
                continue
            bit = 1 << i
            extra = f"[{count} requests in {format_duration(self.bucket)} by {self.by}, limit {limits[i]}]"
            if st[FIRED] & bit:
                hits.append(make_hit(rule, ev, key, 1, None, extra=extra))
            else:
                st[FIRED] |= bit
                hits.append(make_hit(rule, ev, key, count, st[FIRST], extra=extra))
        return hits

    def _evict(self) -> None:
        order = sorted(self.keys.items(), key=lambda kv: kv[1][B])
        for k, _ in order[: max(1, len(order) // 4)]:
            del self.keys[k]

    def sweep(self, now: float) -> None:
        b = int(now // self.bucket)
        stale = [
            k
            for k, st in self.keys.items()
            if st[B] < b - 1 and (st[HIST] is None or st[B] < b - self.history)
        ]
        for k in stale:
            del self.keys[k]

    def dump(self) -> Any:
        return [[k, st] for k, st in self.keys.items()]

    def load(self, data: Any) -> None:
        self.keys = {}
        for k, st in data:
            st[B], st[COUNT], st[FIRED] = int(st[B]), int(st[COUNT]), int(st[FIRED])
            self.keys[str(k)] = list(st)

    def explain(self, rule: Rule, view: EventView, env: Env) -> tuple[str, str]:
        k = self.get(view.ev)
        if k is None:
            return ("no", f"event has no {self.by}")
        i = self.rules.index(rule)
        st = self.keys.get(str(k))
        b = int(view.t // self.bucket)
        same = st is not None and st[B] == b
        count = (st[COUNT] if same and st is not None else 0) + 1
        limits = (st[LIMITS] if same and st is not None else None) or self.default_limits
        what = {"baseline": "baseline limit", "ceiling": "ceiling", "no-429": "heavy-load mark"}[
            self.modes[i]
        ]
        span = format_duration(self.bucket)
        return (
            "counts",
            f"counts toward {rule.id} ({count} in this {span} by {self.by}; {what} {limits[i] + 1})",
        )


def build(rules: list[Rule]) -> list[StatefulDetector]:
    groups: dict[tuple[str, float], list[Rule]] = {}
    for rule in rules:
        groups.setdefault((rule.params["by"], rule.params["bucket"]), []).append(rule)
    return [VolumeDetector(g, by, bucket) for (by, bucket), g in groups.items()]
