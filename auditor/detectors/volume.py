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
emit count-1 hits (folded, see ``Folds``). Events that arrive late count toward the
current bucket.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Sequence
from operator import attrgetter
from statistics import median
from typing import Any

from auditor.detectors.base import Env, Folds, Hits, StatefulDetector, Stretch, make_hit
from auditor.detectors.fields import EventView
from auditor.detectors.params import format_duration
from auditor.model import Event, Hit
from auditor.rules import Rule

_BULK = 32  # requests in a run from which counting in C pays


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
        self.field = by if by in Event.__dataclass_fields__ else None  # a column of events
        self.modes = [r.params["mode"] for r in rules]
        baselines = [r for r in rules if r.params["mode"] == "baseline"]
        self.history = max((r.params["history"] for r in baselines), default=0)
        self.busy_mark = min((r.params["floor"] for r in baselines), default=0) / 2
        self.max_keys = min(r.params["max_keys"] for r in rules)
        self.limited_statuses = frozenset().union(*(r.params["limited_statuses"] for r in rules))
        self.default_limits = self.limits_for(None)
        self.min_limit = min(self.default_limits)
        self.counts: Counter[Any] = Counter()  # requests per key in the current bucket
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
            if counts and max(counts.values()) >= mark:  # usually no key is busy
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

    def check(
        self,
        det: VolumeDetector,
        s: Stretch,
        i: int,
        key: str,
        count: int,
        limited: bool,
        folds: Folds,
        out: Hits,
    ) -> list[Hit]:
        """Hits of a key at its ``count``-th request of the bucket, ``s.events[i]``
        (``limited``: it was answered 429/503 in this bucket). The event is built only for
        a hit (see auditor.packedevents); the count-1 hits of the requests after the one
        that crossed a limit go to ``folds`` (emitted into ``out``)."""
        hits: list[Hit] = []
        limits = self.limits.get(key) or self.default_limits
        for r, rule in enumerate(self.rules):
            if count <= limits[r]:
                continue
            if self.modes[r] == "no-429" and limited:
                continue
            if rule.allow and det.allowed(rule, s.env(i)):
                continue
            bit = 1 << r
            fired = self.fired.get(key, 0)
            if fired & bit and folds.extend(rule, key, i, s.ts[i], rule.severity):
                continue
            span = format_duration(det.bucket)
            extra = f"[{count} requests in {span} by {self.by}, limit {limits[r]}]"
            if fired & bit:
                folds.start(rule, key, i, s.ts[i], rule.severity, extra, out)
            else:
                self.fired[key] = fired | bit
                first = det.current * det.bucket
                hits.append(make_hit(rule, s.events[i], key, count, first, extra=extra))
        return hits

    def count_run(
        self, det: VolumeDetector, s: Stretch, lo: int, hi: int, limited_at: list[int], out: Hits
    ) -> None:
        """Count the requests of ``s.events[lo:hi]`` (one bucket) and emit the hits of the
        keys that pass a limit, at the very request that passes it. ``limited_at``: the
        indexes of the requests answered 429/503 (rare).

        Counting is done in C (``Counter.update``) when no key can be refused for want of
        room (``max_keys``); the few keys above the lowest limit are then replayed request
        by request. Otherwise (or for a short run) every request takes the step-by-step
        path.
        """
        if self.field is not None:
            keys = s.column(self.field)[lo - s.lo : hi - s.lo]
        else:
            keys = list(map(self.get, s.events[lo:hi]))
        counts = self.counts
        folds = Folds(s.events)
        if len(keys) < _BULK or len(counts) + len(keys) > self.max_keys:
            self._count_slowly(det, s, lo, keys, out, folds)
            folds.flush(out)
            return
        counts.update(keys)  # in C
        counts.pop(None, None)
        min_limit = self.min_limit
        hot: dict[Any, list[Any]] = {}
        if counts and max(counts.values()) > min_limit:
            for k, c in counts.items():
                if c > min_limit:
                    hot[k] = [c, str(k) in self.limited]
        for i in limited_at:
            k = keys[i - lo]
            if k is not None:
                self.limited.add(k)
        if hot:
            self._replay(det, s, lo, keys, hot, out, folds)
            folds.flush(out)

    def _replay(
        self,
        det: VolumeDetector,
        s: Stretch,
        lo: int,
        keys: Sequence[Any],
        hot: dict[Any, list[Any]],
        out: Hits,
        folds: Folds,
    ) -> None:
        """Request by request, the counts of the ``hot`` keys (``[final count, limited
        before the run]``) over a run already counted, emitting their hits."""
        ls, min_limit = det.limited_statuses, self.min_limit
        statuses = s.column("status")
        for k in keys:  # the count each hot key had before this run
            st = hot.get(k)
            if st is not None:
                st[0] -= 1
        for j, k in enumerate(keys):
            st = hot.get(k)
            if st is None:
                continue
            i = lo + j
            st[0] += 1
            if ls and statuses[i - s.lo] in ls and isinstance(k, str):
                st[1] = True
            if st[0] > min_limit:
                got = self.check(det, s, i, str(k), st[0], st[1], folds, out)
                if got:
                    out.append((i, got))

    def _count_slowly(
        self,
        det: VolumeDetector,
        s: Stretch,
        lo: int,
        keys: Sequence[Any],
        out: Hits,
        folds: Folds,
    ) -> None:
        counts, ls = self.counts, det.limited_statuses
        statuses = s.column("status")
        for j, k in enumerate(keys):
            if k is None:
                continue
            c = counts.get(k, 0) + 1
            if c == 1 and len(counts) >= self.max_keys:
                continue
            counts[k] = c
            i = lo + j
            if statuses[i - s.lo] in ls:
                self.limited.add(k)
            if c > self.min_limit:
                key = str(k)
                got = self.check(det, s, i, key, c, key in self.limited, folds, out)
                if got:
                    out.append((i, got))

    def dump(self) -> list[Any]:
        return [
            list(self.counts.items()),
            list(self.hist.items()),
            sorted(self.limited),
            list(self.fired.items()),
        ]

    def load(self, data: list[Any]) -> None:
        self.counts = Counter({str(k): int(v) for k, v in data[0]})
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
        fields = [g.field for g in self.groups if g.field is not None]
        self.columns = ("status", *fields)
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
        return self.observe_one(ev, t, env)

    def observe_stretch(self, s: Stretch) -> Hits:
        """``observe`` over a stretch, one bucket at a time, each key field counted in C."""
        out: Hits = []
        lo, hi, marks = s.lo, s.hi, s.marks
        while lo < hi:
            if marks[lo] >= self.edge:
                self._roll(s.ts[lo])
            end = bisect_left(marks, self.edge, lo, hi)
            ls = self.limited_statuses
            limited_at: list[int] = []
            if ls and not ls.isdisjoint(s.column("status")[lo - s.lo : end - s.lo]):  # in C
                statuses = s.column("status")
                limited_at = [i for i in range(lo, end) if statuses[i - s.lo] in ls]
            for g in self.groups:
                g.count_run(self, s, lo, end, limited_at, out)
            lo = end
        return out

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
