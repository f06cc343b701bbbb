"""5xx spikes per source (or host): the share of 5xx answers in a bucket of log time above
both a fixed ratio and the key's own baseline (median + k × 1.4826 × MAD of past buckets).
PCI DSS 10.7.2 when a security component fails, GDPR 32(1)(b) availability, OWASP API8.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from statistics import median
from typing import Any

from auditor.detectors.base import Env, StatefulDetector, make_hit
from auditor.detectors.fields import EventView
from auditor.detectors.params import format_duration
from auditor.model import Event, Hit
from auditor.rules import Rule

# State: [bucket, requests, errors, fired, hist, limit, first_error_t]
B, REQ, ERR, FIRED, HIST, LIMIT, FIRST = range(7)


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
        self.bucket: float = p["bucket"]
        self.min_ratio: float = p["min_ratio"]
        self.mad_k: float = p["mad_k"]
        self.min_requests: int = p["min_requests"]
        self.min_errors: int = p["min_errors"]
        self.history: int = p["history"]
        self.min_history: int = p["min_history"]
        self.max_keys: int = p["max_keys"]
        self.keys: dict[str, list[Any]] = {}

    def _limit(self, hist: list[float]) -> float:
        if len(hist) < self.min_history:
            return self.min_ratio
        med = median(hist)
        mad = median([abs(x - med) for x in hist])
        return max(self.min_ratio, med + self.mad_k * 1.4826 * mad)

    def observe(self, ev: Event, t: float, env: Env) -> list[Hit] | None:
        k = self.get(ev)
        if k is None:
            return None
        b = int(t // self.bucket)
        st = self.keys.get(k)
        if st is None:
            if len(self.keys) >= self.max_keys:
                return None
            st = self.keys[k] = [b, 0, 0, False, [], self.min_ratio, t]
        elif b > st[B]:
            if st[REQ] >= self.min_requests:
                hist = st[HIST]
                hist.append(st[ERR] / st[REQ])
                if len(hist) > self.history:
                    del hist[0]
                st[LIMIT] = self._limit(hist)
            st[B], st[REQ], st[ERR], st[FIRED] = b, 0, 0, False
        st[REQ] += 1
        status = ev.status
        if status is None or status < 500:
            return None
        st[ERR] += 1
        if st[ERR] == 1:
            st[FIRST] = t
        if st[FIRED]:
            return self._hit(ev, st, str(k), 1, None, env)
        if st[ERR] >= self.min_errors and st[REQ] >= self.min_requests and st[ERR] / st[REQ] > st[LIMIT]:
            st[FIRED] = True
            return self._hit(ev, st, str(k), st[ERR], st[FIRST], env)
        return None

    def _hit(
        self, ev: Event, st: list[Any], key: str, count: int, first: float | None, env: Env
    ) -> list[Hit] | None:
        if self.allowed(self.rule, env):
            return None
        extra = (
            f"[{st[ERR]} of {st[REQ]} answers 5xx in {format_duration(self.bucket)}"
            f" ({st[ERR] / st[REQ]:.0%}); limit {st[LIMIT]:.0%}]"
        )
        return [make_hit(self.rule, ev, key, count, first, extra=extra, client_ip=None)]

    def sweep(self, now: float) -> None:
        b = int(now // self.bucket)
        stale = [k for k, st in self.keys.items() if st[B] < b - self.history]
        for k in stale:
            del self.keys[k]

    def dump(self) -> Any:
        return [[k, st] for k, st in self.keys.items()]

    def load(self, data: Any) -> None:
        self.keys = {str(k): list(st) for k, st in data}

    def explain(self, rule: Rule, view: EventView, env: Env) -> tuple[str, str]:
        status = view.ev.status or 0
        k = self.get(view.ev)
        st = self.keys.get(k) if k is not None else None
        limit = st[LIMIT] if st is not None else self.min_ratio
        what = "a 5xx answer" if status >= 500 else "a request"
        return (
            "counts",
            f"counts toward {rule.id} ({what} for {self.by} {k}; fires when 5xx exceed"
            f" {limit:.0%} of {format_duration(self.bucket)} with at least {self.min_errors})",
        )


def build(rules: list[Rule]) -> list[StatefulDetector]:
    return [ErrorRateDetector(r) for r in rules]
