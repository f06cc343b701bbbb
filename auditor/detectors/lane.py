"""Rules counted from columns: which rules can, and the stand-in event they read.

Most 4xx and 5xx answers interest only rules such as "ten distinct not-found paths from
one client within 10 s": a status gate, a test or two on the path, a window keyed by the
client IP. A decode worker sends those fields as columns (see ``auditor.packedevents``),
so such a rule can be evaluated without building the event from its row, which costs
more than the rule itself: the detector runs these rules over a stretch's columns (its
"lane") instead of through the per-event loop, and builds an event only for a hit.

A rule qualifies when each of its clauses tests the status (the lane looks only at the
events with one of those codes) and everything that decides whether it counts (its where-clause, unless-clauses, allow-list and threshold, through the
lazy predicates they name) reads only ``COLUMN_FIELDS``. Eager predicates (evaluated
through the gates) do not qualify: a lane evaluates none. What a hit reads besides
(escalation, evidence, a plain rule's key) comes from the event itself, built on demand
by ``Row``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from auditor.detectors.conditions import Clause
from auditor.model import Event
from auditor.rules import Rule

COLUMN_FIELDS: dict[str, str] = {
    "status": "status",
    "status_class": "status",
    "path": "path",
    "raw_path": "path",
    "client_ip": "client_ip",
    "route": "route",
    "user_name": "user_name",
    "source": "source",
}
"""Fields a lane can read: the field as a rule names it → the event attribute it comes from."""


class Row:
    """An event of a lane: the columns' values as attributes; any other attribute comes from
    the event itself (``events[i]``, built on first use: for a hit's evidence)."""

    __slots__ = ("_events", "_i", "client_ip", "path", "route", "source", "status", "user_name")
    client_ip: str | None
    path: str
    route: str
    source: str
    status: int | None
    user_name: str | None

    def __init__(self, events: Sequence[Event], i: int) -> None:
        self._events = events
        self._i = i

    def __getattr__(self, name: str) -> Any:  # only for what the slots do not hold
        return getattr(self._events[self._i], name)


def lane_attributes(
    rule: Rule, clause: Clause, predicates: Mapping[str, Sequence[Clause]], lazy: Iterable[str]
) -> frozenset[str] | None:
    """The event attributes that decide whether ``clause`` of ``rule`` counts, or ``None``
    when something else does (a field no column holds, an eager predicate)."""
    lazy_names = frozenset(lazy)
    deciding = _fields_read([clause, *rule.unless], predicates, lazy_names)
    # A hit's escalation reads the event itself (any field), but not an eager predicate.
    escalating = _fields_read([e.clause for e in rule.escalate], predicates, lazy_names)
    if deciding is None or escalating is None:
        return None
    fields = set(deciding)
    allow = rule.allow
    if allow.cidrs:
        fields.add("client_ip")
    if allow.paths:
        fields.add("path")
    if allow.user_agents:
        fields.add("user_agent")
    th = rule.threshold
    if th is not None:
        fields.update(th.by)
        if th.of is not None:
            fields.add(th.of)
    if not fields <= COLUMN_FIELDS.keys():
        return None
    return frozenset(COLUMN_FIELDS[f] for f in fields)


def _fields_read(
    clauses: list[Clause], predicates: Mapping[str, Sequence[Clause]], lazy: frozenset[str]
) -> set[str] | None:
    """The fields ``clauses`` read, through the lazy predicates they name; ``None`` when
    one names an eager predicate."""
    fields: set[str] = set()
    seen: set[str] = set()
    while clauses:
        for cond in clauses.pop():
            name = cond.field
            if name not in predicates:
                fields.add(name)
            elif name not in lazy:
                return None
            elif name not in seen:
                seen.add(name)
                clauses.extend(predicates[name])
    return fields
