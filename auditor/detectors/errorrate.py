"""5xx spikes per source (or host): the share of 5xx answers in a bucket of log time above
both a fixed ratio and the key's own baseline (median + k × 1.4826 × MAD of past
buckets). PCI DSS 10.7.2 when a security component fails, GDPR 32(1)(b) availability,
OWASP API8. Buckets are global; per event the detector bumps one or two counters.
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
        if t >= self.edge:
            self._roll(t)
        k = self.get(ev)
        if k is None:
            return None
        st = self.keys.get(k)
        if st is None:
            if len(self.keys) >= self.max_keys:
                return None
            st = self.keys[k] = [0, 0, False, t]
        st[REQ] += 1
        status = ev.status
        if status is None or status < 500:
            return None
        st[ERR] += 1
        if st[ERR] == 1:
            st[FIRST] = t
        if st[FIRED]:
            return self._hit(ev, st, str(k), 1, None, env)
        limit = self.limit.get(k, self.min_ratio)
        if (
            st[ERR] >= self.min_errors
            and st[REQ] >= self.min_requests
            and st[ERR] / st[REQ] > limit
        ):
            st[FIRED] = True
            return self._hit(ev, st, str(k), st[ERR], st[FIRST], env)
        return None

    def _hit(
        self, ev: Event, st: list[Any], key: str, count: int, first: float | None, env: Env
    ) -> list[Hit] | None:
        if self.allowed(self.rule, env):
            return None
        limit = self.limit.get(key, self.min_ratio)
        extra = (
            f"[{st[ERR]} of {st[REQ]} answers 5xx in {format_duration(self.bucket)}"
            f" ({st[ERR] / st[REQ]:.0%}); limit {limit:.0%}]"
        )
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
