"""What every detector-backed rule implementation shares: the per-event environment, hit
construction, and the state contract (``dump``/``load``/``sweep``) the ``Detector`` relies on.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from auditor.detectors.fields import EventView, evidence
from auditor.model import Event, Hit, Severity
from auditor.rules import Rule


class Env:
    """Per-event context handed to detectors: matched predicates and a lazy ``EventView``."""

    __slots__ = ("_ev", "_t", "_view", "lazy", "preds")

    def __init__(self, lazy: Mapping[str, Any] | None = None) -> None:
        self.lazy = lazy
        self.preds: frozenset[str] = frozenset()
        self._view: EventView | None = None
        self._ev: Event | None = None
        self._t = 0.0

    def reset(self, ev: Event, t: float, preds: frozenset[str], view: EventView | None) -> None:
        self._ev, self._t, self.preds, self._view = ev, t, preds, view

    def view(self) -> EventView:
        if self._view is None:
            assert self._ev is not None
            self._view = EventView(self._ev, self._t, self.preds, self.lazy)
        return self._view


def to_dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def make_hit(
    rule: Rule,
    ev: Event,
    key: str,
    count: int = 1,
    first: float | None = None,
    *,
    severity: Severity | None = None,
    extra: str | None = None,
    pii_type: str | None = None,
    digest: str | None = None,
    client_ip: str | None = "",
) -> Hit:
    """A ``Hit`` for ``rule`` at event ``ev``; ``first`` (log seconds) defaults to the event."""
    return Hit(
        rule_id=rule.id,
        title=rule.title,
        category=rule.category,
        severity=severity if severity is not None else rule.severity,
        key=key,
        timestamp=ev.timestamp,
        first_seen=ev.timestamp if first is None else min(to_dt(first), ev.timestamp),
        count=count,
        source=ev.source,
        client_ip=ev.client_ip if client_ip == "" else client_ip,
        evidence=evidence(ev, extra),
        controls=rule.controls,
        pii_type=pii_type,
        digest=digest,
        episode_gap_s=rule.episode_gap_s,
    )


class StatefulDetector:
    """Base of the detector implementations (one instance may serve several rules)."""

    name = "detector"
    # Which events the Detector hands over: "all", those with "exposures", those with
    # "preds" or one of ``statuses``, or "transport" (scheme/port/TLS known).
    wants = "all"
    statuses: frozenset[int] = frozenset()

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    @property
    def ident(self) -> str:
        """Stable name of this instance in snapshots."""
        return f"{self.name}:{','.join(r.id for r in self.rules)}"

    @property
    def fingerprint(self) -> str:
        return ",".join(r.fingerprint for r in self.rules)

    def observe(self, ev: Event, t: float, env: Env) -> list[Hit] | None:
        raise NotImplementedError

    def sweep(self, now: float) -> None:
        """Forget state that can no longer matter at log time ``now``."""

    def dump(self) -> Any:
        return None

    def load(self, data: Any) -> None:
        """Restore what ``dump`` returned."""

    def explain(self, rule: Rule, view: EventView, env: Env) -> tuple[str, str]:
        """``(verdict, reason)`` for ``explain``: verdict is fires/counts/no."""
        return ("no", "detector")

    @staticmethod
    def allowed(rule: Rule, env: Env) -> bool:
        return bool(rule.allow) and rule.allow.allows(env.view())
