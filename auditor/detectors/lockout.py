"""Lockouts that never happen (PCI DSS 8.3.4): a user ID must be locked after at most 10
invalid attempts, for at least 30 minutes or until the identity is confirmed.

Per user name (the log must carry one): more than ``max_attempts`` failures within
``window`` with no lockout answer (423/429) in between, or a successful login within
``window`` of the ``max_attempts``-th failure, show that no lockout is enforced.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from auditor.detectors.base import Env, StatefulDetector, make_hit
from auditor.detectors.fields import EventView
from auditor.detectors.params import format_duration
from auditor.model import Event, Hit
from auditor.rules import Rule

# State: [failure times, locked_until, last_t, active]
FAILS, LOCKED, LAST, ACTIVE = range(4)


class LockoutDetector(StatefulDetector):
    name = "lockout"
    wants = "preds"

    def __init__(self, rule: Rule) -> None:
        super().__init__([rule])
        self.rule = rule
        p = rule.params
        self.failure: str = p["failure"]
        self.success: str = p["success"]
        self.max_attempts: int = p["max_attempts"]
        self.window: float = p["window"]
        self.lock_statuses: frozenset[int] = p["lockout_statuses"]
        self.statuses = self.lock_statuses
        self.max_keys: int = p["max_keys"]
        self.keys: dict[str, list[Any]] = {}

    def _new(self, t: float) -> list[Any]:
        return [deque(maxlen=self.max_attempts + 1), 0.0, t, False]

    def observe(self, ev: Event, t: float, env: Env) -> list[Hit] | None:
        preds = env.preds
        status = ev.status
        failed = self.failure in preds
        locked = status in self.lock_statuses
        if not (failed or locked or self.success in preds):
            return None
        user = ev.user_name
        if user is None or user in ("", "-"):
            return None
        st = self.keys.get(user)
        if st is None:
            if len(self.keys) >= self.max_keys:
                self._evict()
            st = self.keys[user] = self._new(t)
        t = max(t, st[LAST])
        st[LAST] = t
        fails: deque[float] = st[FAILS]
        cutoff = t - self.window
        while fails and fails[0] < cutoff:
            fails.popleft()
        if locked:
            st[LOCKED] = t + self.window
            fails.clear()
            st[ACTIVE] = False
            return None
        if failed:
            if t < st[LOCKED]:
                return None
            fails.append(t)
            if len(fails) <= self.max_attempts:
                return None
            if st[ACTIVE]:
                return self._hit(ev, user, 1, None, "failures continue", env)
            st[ACTIVE] = True
            return self._hit(
                ev, user, len(fails), fails[0], f"{len(fails)} failures, no lockout", env
            )
        # a success
        enough = len(fails) >= self.max_attempts
        first = fails[0] if fails else None
        fails.clear()
        st[ACTIVE] = False
        if enough and t >= st[LOCKED]:
            n = self.max_attempts
            return self._hit(ev, user, n + 1, first, f"login succeeded after {n} failures", env)
        return None

    def _hit(
        self, ev: Event, user: str, count: int, first: float | None, what: str, env: Env
    ) -> list[Hit] | None:
        if self.allowed(self.rule, env):
            return None
        extra = f"[user {user}: {what} within {format_duration(self.window)}]"
        return [make_hit(self.rule, ev, user, count, first, extra=extra)]

    def _evict(self) -> None:
        order = sorted(self.keys.items(), key=lambda kv: kv[1][LAST])
        for k, _ in order[: max(1, len(order) // 4)]:
            del self.keys[k]

    def sweep(self, now: float) -> None:
        stale = [
            k for k, st in self.keys.items() if now - st[LAST] > self.window and now >= st[LOCKED]
        ]
        for k in stale:
            del self.keys[k]

    def dump(self) -> Any:
        return [
            [k, [list(st[FAILS]), st[LOCKED], st[LAST], st[ACTIVE]]] for k, st in self.keys.items()
        ]

    def load(self, data: Any) -> None:
        self.keys = {}
        for k, st in data:
            fails = deque((float(x) for x in st[0]), maxlen=self.max_attempts + 1)
            self.keys[str(k)] = [fails, float(st[1]), float(st[2]), bool(st[3])]

    def explain(self, rule: Rule, view: EventView, env: Env) -> tuple[str, str]:
        ev = view.ev
        preds = env.preds
        user = ev.user_name
        kind = (
            "a lockout answer"
            if ev.status in self.lock_statuses
            else "a failure"
            if self.failure in preds
            else "a success"
            if self.success in preds
            else None
        )
        if kind is None:
            return ("no", f"neither {self.failure} nor {self.success}")
        if user in (None, "", "-"):
            return ("no", f"{kind} but the log has no user name")
        st = self.keys.get(str(user))
        n = len(st[FAILS]) if st is not None else 0
        return (
            "counts",
            (
                f"counts toward {rule.id} ({kind} for user {user}; {n} recent failures,"
                f" fires past {self.max_attempts} within {format_duration(self.window)} without 423/429)"
            ),
        )


def build(rules: list[Rule]) -> list[StatefulDetector]:
    return [LockoutDetector(r) for r in rules]
