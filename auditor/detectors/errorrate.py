"""5xx spikes per source (or host): the share of 5xx answers in a bucket of log time above
both a fixed ratio and the key's own baseline (median + k × 1.4826 × MAD of past
buckets). PCI DSS 10.7.2 when a security component fails, GDPR 32(1)(b) availability,
OWASP API8. Buckets are global; per event the detector bumps one or two counters.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable
from operator import attrgetter
from statistics import median
from typing import Any

from auditor.detectors.base import Env, Folds, Hits, StatefulDetector, Stretch, make_hit
from auditor.detectors.fields import EventView
from auditor.detectors.params import format_duration
from auditor.model import Event, Hit
from auditor.rules import Rule

# State per key in the current bucket: [requests, errors, fired, first_error_t]
REQ, ERR, FIRED, FIRST = range(4)


class ErrorRateDetector(StatefulDetector):
    name = "error-rate"

    def __init__(self, rule: Rule) -> None:
        super().__init__([rule])
        self.rule = rule
        p = rule.params
        self.by: str = p["by"]
        self.get: Callable[[Event], Any] = (
            attrgetter(self.by)
            if self.by in Event.__dataclass_fields__
            else (lambda ev: EventView(ev, 0.0).get(self.by))
        )
        self.field = self.by if self.by in Event.__dataclass_fields__ else None
        self.columns = ("status",) if self.field is None else (self.field, "status")
        self.bucket: float = p["bucket"]
        self.min_ratio: float = p["min_ratio"]
        self.mad_k: float = p["mad_k"]
        self.min_requests: int = p["min_requests"]
        self.min_errors: int = p["min_errors"]
        self.history: int = p["history"]
        self.min_history: int = p["min_history"]
        self.max_keys: int = p["max_keys"]
        self.keys: dict[str, list[Any]] = {}
        self.hist: dict[str, list[float]] = {}
        self.limit: dict[str, float] = {}
        self.current = -1
        self.edge = -math.inf

    def _limit(self, hist: list[float]) -> float:
        if len(hist) < self.min_history:
            return self.min_ratio
        med = median(hist)
        mad = median([abs(x - med) for x in hist])
        return max(self.min_ratio, med + self.mad_k * 1.4826 * mad)

    def _roll(self, t: float) -> None:
        for k, st in self.keys.items():
            if st[REQ] >= self.min_requests:
                hist = self.hist.setdefault(k, [])
                hist.append(st[ERR] / st[REQ])
                if len(hist) > self.history:
                    del hist[0]
                self.limit[k] = self._limit(hist)
        self.keys.clear()
        self.current = int(t // self.bucket)
        self.edge = (self.current + 1) * self.bucket

    def observe(self, ev: Event, t: float, env: Env) -> list[Hit] | None:
        return self.observe_one(ev, t, env)

    def observe_stretch(self, s: Stretch) -> Hits:
        """``observe`` over a stretch: bucket by bucket, the request count of the current
        key in a local variable; only 5xx answers take the full path."""
        out: Hits = []
        events, ts, marks = s.events, s.ts, s.marks
        get, keys, max_keys = self.get, self.keys, self.max_keys
        # The count-1 hits of a key past its limit, folded (unless allow-lists must look
        # at each request).
        folds = None if self.rule.allow else Folds(s.events)
        lo, hi = s.lo, s.hi
        while lo < hi:
            if marks[lo] >= self.edge:
                self._roll(ts[lo])
            end = bisect_left(marks, self.edge, lo, hi)
            if self._count_quietly(s, lo, end):
                lo = end
                continue
            key: Any = None
            st: list[Any] | None = None
            req = 0
            # Columns, not events: only the 5xx answers are looked at one by one.
            keyed = s.column(self.field) if self.field is not None else None
            statuses = s.column("status")
            base = s.lo
            for i in range(lo, end):
                k = keyed[i - base] if keyed is not None else get(events[i])
                if k != key or st is None:
                    if st is not None:
                        st[REQ] = req
                    key = k
                    if k is None:
                        st = None
                        continue
                    st = keys.get(k)
                    if st is None:
                        if len(keys) >= max_keys:
                            continue
                        st = keys[k] = [0, 0, False, ts[i]]
                    req = st[REQ]
                req += 1
                status = statuses[i - base]
                if status is not None and status >= 500:
                    st[REQ] = req
                    got = self._error(ts[i], st, k, s, i, folds, out)
                    if got:
                        out.append((i, got))
            if st is not None:
                st[REQ] = req
            lo = end
        if folds is not None:
            folds.flush(out)
        return out

    def _count_quietly(self, s: Stretch, lo: int, end: int) -> bool:
        """The usual run (one key, no 5xx) counted in C; False (nothing done) otherwise."""
        a, b = lo - s.lo, end - s.lo
        found = set(
            s.column(self.field)[a:b] if self.field is not None else map(self.get, s.events[lo:end])
        )
        statuses = set(s.column("status")[a:b])
        if len(found) != 1 or any(x is not None and x >= 500 for x in statuses):
            return False
        k = found.pop()
        if k is None:
            return True
        st = self.keys.get(k)
        if st is None:
            if len(self.keys) >= self.max_keys:
                return True
            st = self.keys[k] = [0, 0, False, s.ts[lo]]
        st[REQ] += end - lo
        return True

    def _error(
        self,
        t: float,
        st: list[Any],
        k: Any,
        s: Stretch,
        i: int,
        folds: Folds | None,
        out: Hits,
    ) -> list[Hit] | None:
        """A 5xx answer (``s.events[i]``, built only for a hit) counted in ``st``
        (requests included); with ``folds``, a further hit of a key past its limit is
        folded there (emitted into ``out``)."""
        st[ERR] += 1
        if st[ERR] == 1:
            st[FIRST] = t
        if st[FIRED]:
            if folds is not None:
                key = str(k)
                if not folds.extend(self.rule, key, i, t, self.rule.severity):
                    note = self._note(st, key)
                    sev = self.rule.severity
                    folds.start(self.rule, key, i, t, sev, note, out, client_ip=None)
                return None
            return self._hit(s.events[i], st, str(k), 1, None, s.env(i))
        limit = self.limit.get(k, self.min_ratio)
        if (
            st[ERR] >= self.min_errors
            and st[REQ] >= self.min_requests
            and st[ERR] / st[REQ] > limit
        ):
            st[FIRED] = True
            if folds is not None:
                folds.cut(self.rule, str(k), out)
            return self._hit(s.events[i], st, str(k), st[ERR], st[FIRST], s.env(i))
        return None

    def _note(self, st: list[Any], key: str) -> str:
        limit = self.limit.get(key, self.min_ratio)
        return (
            f"[{st[ERR]} of {st[REQ]} answers 5xx in {format_duration(self.bucket)}"
            f" ({st[ERR] / st[REQ]:.0%}); limit {limit:.0%}]"
        )

    def _hit(
        self, ev: Event, st: list[Any], key: str, count: int, first: float | None, env: Env
    ) -> list[Hit] | None:
        if self.allowed(self.rule, env):
            return None
        extra = self._note(st, key)
        return [make_hit(self.rule, ev, key, count, first, extra=extra, client_ip=None)]

    def dump(self) -> Any:
        return [self.current, list(self.keys.items()), list(self.hist.items())]

    def load(self, data: Any) -> None:
        self.current = int(data[0])
        self.edge = (self.current + 1) * self.bucket if self.current >= 0 else -math.inf
        self.keys = {str(k): list(st) for k, st in data[1]}
        self.hist = {str(k): [float(x) for x in h] for k, h in data[2]}
        self.limit = {k: self._limit(h) for k, h in self.hist.items()}

    def explain(self, rule: Rule, view: EventView, env: Env) -> tuple[str, str]:
        status = view.ev.status or 0
        k = self.get(view.ev)
        limit = self.limit.get(k, self.min_ratio) if k is not None else self.min_ratio
        what = "a 5xx answer" if status >= 500 else "a request"
        return (
            "counts",
            (
                f"counts toward {rule.id} ({what} for {self.by} {k}; fires when 5xx exceed"
                f" {limit:.0%} of {format_duration(self.bucket)} with at least {self.min_errors})"
            ),
        )


def build(rules: list[Rule]) -> list[StatefulDetector]:
    return [ErrorRateDetector(r) for r in rules]
