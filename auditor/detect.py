"""The detection engine: events in, hits out, in log-time order, state in a snapshot.

``Detector(ruleset).observe(event)`` gates the event (``auditor.detectors.gate``),
evaluates the predicates and rule clauses that passed their gates, feeds threshold
windows, and runs the detector-backed rules (PII, transport, volume...). Windows run on
the events' own timestamps, so the hits do not depend on how the input is batched, and
``snapshot()``/``Detector.restore()`` carry every bit of state across a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

import orjson

from auditor.detectors import build_detectors
from auditor.detectors.base import Env, StatefulDetector, make_hit
from auditor.detectors.conditions import clause_holds, first_failure
from auditor.detectors.fields import EventView, decode_path, key_of
from auditor.detectors.gate import CachedGate, Entry, Plan, build_plan
from auditor.detectors.windows import Window, make_window
from auditor.model import Event, Hit
from auditor.rules import Rule, RuleSet, predicate_deps

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = 1
SWEEP_EVERY = 60.0  # seconds of log time between sweeps of idle state
_NO_PREDS: frozenset[str] = frozenset()


def _ua(raw: str | None) -> str | None:
    return None if raw is None or raw == "-" else raw


def _ref(raw: str | None) -> str | None:
    return None if raw is None or raw == "-" else decode_path(raw)


_CACHED_RAW: dict[str, tuple[Callable[[Event], str | None], Callable[[str | None], str | None]]] = {
    "user_agent": (attrgetter("user_agent"), _ua),
    "referrer": (attrgetter("referrer"), _ref),
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """How one rule relates to one event, for ``explain``."""

    rule_id: str
    category: str
    verdict: str  # "fires" | "counts" | "no"
    reason: str


class Detector:
    """Stateful rule evaluation over a stream of events (see module doc)."""

    def __init__(self, ruleset: RuleSet, max_keys: int = 20000) -> None:
        self.ruleset = ruleset
        used = _used_predicates(ruleset)
        entries: list[Entry] = []
        for name, pred in ruleset.predicates.items():
            if name in used:
                for clause in pred.clauses:
                    entries.append(Entry(len(entries), name, True, clause))
        self._rule_order: dict[str, int] = {}
        for pos, rule in enumerate(ruleset.rules):
            self._rule_order[rule.id] = pos
            if rule.detector is None:
                for clause in rule.clauses:
                    entries.append(Entry(len(entries), rule.id, False, clause))
        self._plan: Plan = build_plan(entries, frozenset(ruleset.predicates))
        self._entries = entries
        self._rules = {r.id: r for r in ruleset.rules}
        self._fields = [(attrgetter(f), table) for f, table in self._plan.fields.items()]
        self._cached = [
            (_CACHED_RAW[f][0], CachedGate(f, entries, ids, _CACHED_RAW[f][1]))
            for f, ids in self._plan.cached.items()
        ]
        self._windows: dict[str, Window] = {
            r.id: make_window(r.threshold, max_keys) for r in ruleset.rules if r.threshold
        }
        self._dets: list[StatefulDetector] = build_detectors(
            [r for r in ruleset.rules if r.detector is not None]
        )
        self._env = Env()
        self._wm = -1.0
        self._next_sweep = 0.0
        self._last_dt: datetime | None = None
        self._last_t = 0.0

    # --- the hot path -------------------------------------------------------------------

    def _time(self, ev: Event) -> float:
        ts = ev.timestamp
        if ts is self._last_dt:
            return self._last_t
        t = ts.timestamp()
        self._last_dt, self._last_t = ts, t
        return t

    def observe(self, event: Event) -> list[Hit]:
        """Hits caused by ``event`` (usually none). Never raises on odd event values."""
        t = self._time(event)
        if t > self._wm:
            self._wm = t
            if t >= self._next_sweep:
                self._sweep(t)
        cands, view = self._candidates(event, t)
        hits: list[Hit] = []
        preds = _NO_PREDS
        if cands:
            if view is None:
                view = EventView(event, t)
            preds = self._evaluate(cands, view, t, hits)
        env = self._env
        env.reset(event, t, preds, view)
        for det in self._dets:
            got = det.observe(event, t, env)
            if got:
                hits.extend(got)
        return hits

    def _candidates(self, ev: Event, t: float) -> tuple[list[int], EventView | None]:
        plan = self._plan
        cands: list[int] = []
        ids = plan.status.get(ev.status)
        if ids:
            cands.extend(ids)
        for get, table in self._fields:
            ids = table.get(get(ev))
            if ids:
                cands.extend(ids)
        for get_raw, gate in self._cached:
            ids = gate.candidates(get_raw(ev))
            if ids:
                cands.extend(ids)
        view = None
        if plan.url_entries:
            url = plan.url
            path, query = ev.path, ev.query
            raw = path if query is None else f"{path}?{query}"
            if "%" in raw or (url.space and "+" in raw):
                view = EventView(ev, t)
                low = view.lower("target") or ""
                low_path = view.lower("path") or ""
            else:
                low = raw.lower()
                low_path = low if query is None else low[: len(path)]
            url.candidates(low, low_path, cands)
        if plan.always:
            cands.extend(plan.always)
        return cands, view

    def _evaluate(
        self, cands: list[int], view: EventView, t: float, hits: list[Hit]
    ) -> frozenset[str]:
        entries = self._entries
        gated = self._plan.preds
        preds: set[str] = set()
        rule_ids: list[int] = []
        pending = sorted(cands)
        while pending:
            fresh: list[str] = []
            for i in pending:
                e = entries[i]
                if not e.is_pred:
                    rule_ids.append(i)
                elif e.owner not in preds and clause_holds(e.clause, view):
                    preds.add(e.owner)
                    fresh.append(e.owner)
                    view.preds = frozenset(preds)
            pending = sorted({j for name in fresh for j in gated.get(name, ())})
        frozen = view.preds if preds else _NO_PREDS
        if not rule_ids:
            return frozen
        matched: dict[str, None] = {}
        for i in sorted(set(rule_ids)):
            e = entries[i]
            if e.owner not in matched and clause_holds(e.clause, view):
                matched[e.owner] = None
        order = self._rule_order
        for rid in sorted(matched, key=order.__getitem__):
            self._fire(self._rules[rid], view, t, hits)
        return frozen

    def _fire(self, rule: Rule, view: EventView, t: float, hits: list[Hit]) -> None:
        for clause in rule.unless:
            if clause_holds(clause, view):
                return
        if rule.allow and rule.allow.allows(view):
            return
        th = rule.threshold
        if th is None:
            key = key_of(view, rule.key) or "-"
            hits.append(self._hit(rule, view, key, 1, None))
            return
        key = key_of(view, th.by)
        if key is None:
            return
        value = None
        if th.of is not None:
            raw = view.get(th.of)
            if raw is None or raw == "":
                return
            value = str(raw)
        got = self._windows[rule.id].add(key, t, value)
        if got is not None:
            hits.append(self._hit(rule, view, key, got[0], got[1]))

    @staticmethod
    def _hit(rule: Rule, view: EventView, key: str, count: int, first: float | None) -> Hit:
        severity = rule.severity
        for esc in rule.escalate:
            if esc.severity > severity and clause_holds(esc.clause, view):
                severity = esc.severity
        extra = None
        if rule.evidence != "target":
            value = view.get(rule.evidence)
            if value:
                label = "ua" if rule.evidence == "user_agent" else "referer"
                extra = f"{label}={str(value)[:100]!r}"
        return make_hit(rule, view.ev, key, count, first, severity=severity, extra=extra)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_EVERY
        for w in self._windows.values():
            w.sweep(now)
        for det in self._dets:
            det.sweep(now)

    # --- state ----------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """All window and detector state, as compact JSON (committed with each batch)."""
        state: dict[str, Any] = {
            "v": SNAPSHOT_VERSION,
            "wm": self._wm,
            "ns": self._next_sweep,
            "w": {
                rid: [self._rules[rid].fingerprint, w.dump()] for rid, w in self._windows.items()
            },
            "d": {d.ident: [d.fingerprint, d.dump()] for d in self._dets},
        }
        return orjson.dumps(state)

    @classmethod
    def restore(cls, ruleset: RuleSet, blob: bytes | None) -> Detector:
        """A detector for ``ruleset`` resuming from ``blob``.

        State of rules whose definition changed (or vanished) is dropped; a blob that
        cannot be read is logged and ignored: losing windows is better than not starting.
        """
        det = cls(ruleset)
        if not blob:
            return det
        try:
            state = orjson.loads(blob)
            if state.get("v") != SNAPSHOT_VERSION:
                raise ValueError(f"snapshot version {state.get('v')!r}")
            det._wm = float(state["wm"])
            det._next_sweep = float(state["ns"])
            for rid, (fp, data) in state["w"].items():
                rule = det._rules.get(rid)
                if rule is not None and rid in det._windows and rule.fingerprint == fp:
                    det._windows[rid].load(data)
            dets = {d.ident: d for d in det._dets}
            for ident, (fp, data) in state["d"].items():
                d = dets.get(ident)
                if d is not None and d.fingerprint == fp:
                    d.load(data)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("detector state could not be restored, starting fresh: %s", exc)
            return cls(ruleset)
        return det

    # --- explain --------------------------------------------------------------------------

    def predicates_of(self, event: Event) -> frozenset[str]:
        """Every predicate the event satisfies (all of them, gated or not)."""
        view = EventView(event, self._time(event))
        return frozenset(
            name
            for name, pred in self.ruleset.predicates.items()
            if any(clause_holds(c, view) for c in pred.clauses)
        )

    def explain(self, event: Event) -> list[Verdict]:
        """For every rule: does this event fire it, count toward it, or why not."""
        t = self._time(event)
        preds = self.predicates_of(event)
        view = EventView(event, t, preds)
        env = Env()
        env.reset(event, t, preds, view)
        out: list[Verdict] = []
        dets = {r.id: d for d in self._dets for r in d.rules}
        for rule in self.ruleset.rules:
            if rule.detector is not None:
                verdict, reason = dets[rule.id].explain(rule, view, env)
                out.append(Verdict(rule.id, rule.category, verdict, reason))
                continue
            out.append(self._explain_rule(rule, view))
        return out

    def _explain_rule(self, rule: Rule, view: EventView) -> Verdict:
        failures = []
        for clause in rule.clauses:
            bad = first_failure(clause, view)
            if bad is None:
                break
            failures.append(bad)
        else:
            reason = "; ".join(f"{c.describe()} does not hold" for c in failures[:3])
            return Verdict(rule.id, rule.category, "no", reason)
        for clause in rule.unless:
            if clause_holds(clause, view):
                cond = ", ".join(c.describe() for c in clause)
                return Verdict(
                    rule.id, rule.category, "no", f"matches but excluded by unless ({cond})"
                )
        if rule.allow and rule.allow.allows(view):
            return Verdict(rule.id, rule.category, "no", "matches but allow-listed")
        th = rule.threshold
        if th is None:
            return Verdict(rule.id, rule.category, "fires", "all conditions hold")
        key = key_of(view, th.by)
        if key is None:
            return Verdict(rule.id, rule.category, "no", f"matches but has no {'+'.join(th.by)}")
        level = self._windows[rule.id].peek(key) + 1
        return Verdict(
            rule.id,
            rule.category,
            "counts",
            f"counts toward {rule.id} ({min(level, th.n)} of {th.n}: {th.describe()}, key {key})",
        )

    def patterns(self) -> list[str]:
        """Every regex the engine built from the rule set (for the backtracking test)."""
        return self._plan.patterns()


def _used_predicates(ruleset: RuleSet) -> set[str]:
    """Predicates some rule tests, directly or through another predicate."""
    names = set(ruleset.predicates)
    used: set[str] = set()
    for rule in ruleset.rules:
        clauses = [*rule.clauses, *rule.unless, *(e.clause for e in rule.escalate)]
        for clause in clauses:
            used.update(c.field for c in clause if c.field in names)
        for value in rule.params.values():
            if isinstance(value, str) and value in names:
                used.add(value)
    todo = list(used)
    while todo:
        name = todo.pop()
        for dep in predicate_deps(ruleset.predicates[name], names):
            if dep not in used:
                used.add(dep)
                todo.append(dep)
    return used
