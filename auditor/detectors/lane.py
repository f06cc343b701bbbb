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

from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import and_, not_, or_, truth
from typing import Any, cast

from auditor.detectors.conditions import Clause, Condition
from auditor.detectors.fields import FIELDS, decode_path
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


def condition_keys(clauses: Iterable[Clause]) -> dict[int, int]:
    """By id of each condition of ``clauses``, a number that equal conditions (same field,
    operator and value) share: rules often repeat one (a list of status codes), and a lane
    tests it once. The ids are those of conditions the caller keeps alive with the map."""
    numbers: dict[tuple[str, str, str], int] = {}
    return {
        id(c): numbers.setdefault((c.field, c.op, repr(c.value)), len(numbers))
        for clause in clauses
        for c in clause
    }


def field_values(field: str, raw: list[Any]) -> list[Any]:
    """A field's values as ``EventView.get`` gives them, from its attribute's values."""
    if field == "path":
        return [decode_path(p) for p in raw]
    if field == "status_class":
        return [None if code is None else code // 100 for code in raw]
    if field == "user_name":
        return [None if u is None or u in ("-", "") else u for u in raw]
    return raw  # status, raw_path, client_ip, route, source: as logged


def texts(values: list[Any]) -> list[str | None]:
    """Values as a threshold's key or distinct value takes them: ``None`` when missing or
    empty, else as text."""
    return [None if v is None or v == "" else v if isinstance(v, str) else str(v) for v in values]


class LaneColumns:
    """The lane's events of one stretch (at positions ``at`` of its columns), a field or a
    condition at a time for all of them: each value computed once, each test a ``map``.

    ``column(attribute)`` gives an attribute of every event of the stretch; ``predicates``:
    the lazy predicates' clauses (the lane evaluates them as ``EventView`` does)."""

    __slots__ = ("_column", "_held", "_keys", "_lower", "_predicates", "_texts", "_values", "at")

    def __init__(
        self,
        at: list[int],
        column: Callable[[str], list[Any]],
        predicates: Mapping[str, Sequence[Clause]],
        keys: Mapping[int, int],
    ) -> None:
        self.at = at
        self._column = column
        self._predicates = predicates
        self._keys = keys  # see ``condition_keys``
        self._values: dict[str, list[Any]] = {}
        self._lower: dict[str, list[str | None]] = {}
        self._held: dict[int, list[bool]] = {}
        self._texts: dict[str, list[str | None]] = {}

    def values(self, field: str) -> list[Any]:
        got = self._values.get(field)
        if got is None:
            if field in self._predicates:
                got = self._predicate(field)
            else:
                col = self._column(COLUMN_FIELDS[field])
                got = field_values(field, [col[j] for j in self.at])
            self._values[field] = got
        return got

    def texts(self, field: str) -> list[str | None]:
        """The field's values as a threshold's key or distinct value (see ``texts``)."""
        got = self._texts.get(field)
        if got is None:
            got = self._texts[field] = texts(self.values(field))
        return got

    def keys(self, by: tuple[str, ...]) -> list[str | None]:
        """Each event's threshold key (as ``key_of`` makes it from a view)."""
        if len(by) == 1:
            return self.texts(by[0])
        parts = [self.texts(name) for name in by]
        return [
            None if None in ps else "|".join(cast(tuple[str, ...], ps))
            for ps in zip(*parts, strict=True)
        ]

    def clause(self, clause: Clause) -> list[bool]:
        """Whether ``clause`` holds, for each event."""
        out: list[bool] | None = None
        for cond in clause:
            held = self._holds(cond)
            out = held if out is None else list(map(and_, out, held))
        return [True] * len(self.at) if out is None else out

    def unless(self, ok: list[bool], clause: Clause) -> list[bool]:
        """``ok``, but False where ``clause`` holds."""
        return list(map(and_, ok, map(not_, self.clause(clause))))

    def _holds(self, cond: Condition) -> list[bool]:
        key = self._keys[id(cond)]
        got = self._held.get(key)
        if got is None:
            name, test = cond.field, cond.test
            if cond.lowered:
                got = list(map(truth, map(test, self._lowered(name))))
            elif name not in FIELDS and cond.op == "eq" and isinstance(cond.value, bool):
                value = cond.value  # a predicate (see conditions._fused)
                got = [v is value for v in self.values(name)]
            else:
                got = list(map(truth, map(test, self.values(name))))
            self._held[key] = got
        return got

    def _lowered(self, field: str) -> list[str | None]:
        got = self._lower.get(field)
        if got is None:
            got = self._lower[field] = [
                v.lower() if isinstance(v, str) else None for v in self.values(field)
            ]
        return got

    def _predicate(self, name: str) -> list[bool]:
        out = [False] * len(self.at)
        for clause in self._predicates[name]:
            out = list(map(or_, out, self.clause(clause)))
        return out
