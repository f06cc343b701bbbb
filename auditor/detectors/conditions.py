"""Conditions on event fields: ``{ path = { contains = ["../"] }, status = { gte = 400 } }``.

A condition is one field and one operator. A clause is a tuple of conditions that must all
hold. Operators: ``eq``, ``in``, ``not_in``, ``regex``, ``iregex``, ``contains``, ``prefix``,
``suffix`` (the last three case-insensitive, on lists of literals, fast), ``cidr``,
``not_cidr``, ``gte``, ``lte``, ``gt``, ``lt``, ``exists``. Regexes with nested quantifiers
are refused: they can backtrack for minutes on a hostile URL.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from auditor.detectors.fields import (
    BOOL,
    DIRECT_FIELDS,
    FIELDS,
    FLOAT,
    INT,
    MAX_SCAN,
    TEXT,
    EventView,
)

TEXT_OPS = ("eq", "in", "not_in", "regex", "iregex", "contains", "prefix", "suffix", "exists")
NUM_OPS = ("eq", "in", "not_in", "gte", "lte", "gt", "lt", "exists")
IP_OPS = ("cidr", "not_cidr")
IP_FIELDS = frozenset({"client_ip", "forwarded_for"})
LITERAL_OPS = frozenset({"contains", "prefix", "suffix"})


class ConditionError(ValueError):
    """A condition that cannot be compiled; the loader adds file, rule and key."""


@dataclass(frozen=True, slots=True)
class Condition:
    """One test on one field. ``needles`` are the lower-case literals of contains/prefix/suffix."""

    field: str
    op: str
    value: Any
    test: Callable[[Any], bool] = dataclasses.field(compare=False, repr=False)
    needles: tuple[str, ...] = ()
    lowered: bool = False  # the test wants the lower-cased text
    check: Callable[[EventView], bool] = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "check", _fused(self))

    def holds(self, view: EventView) -> bool:
        return self.check(view)

    def describe(self) -> str:
        value = self.value
        if isinstance(value, list | tuple) and len(value) > 6:
            value = [*list(value)[:6], "..."]
        return f"{self.field} {self.op} {value!r}"


Clause = tuple[Condition, ...]


def _fused(cond: Condition) -> Callable[[EventView], bool]:
    """One closure that fetches the field and tests it (the hot path of rule evaluation)."""
    name, test, op, value = cond.field, cond.test, cond.op, cond.value
    if cond.lowered:
        return lambda v: test(v.lower(name))
    if name not in FIELDS and op == "eq" and isinstance(value, bool):
        return lambda v: v.get(name) is value  # a predicate (its test: ``v is value``)
    if name not in DIRECT_FIELDS:
        return lambda v: test(v.get(name))
    get = attrgetter(name)
    if op == "in" and isinstance(value, list):
        vals = frozenset(value)
        return lambda v: get(v.ev) in vals
    if op == "eq" and not isinstance(value, bool):
        return lambda v: get(v.ev) == value
    return lambda v: test(get(v.ev))


def has_nested_quantifier(pattern: str) -> bool:
    """True when a repeated group contains another unbounded-ish repeat, e.g. ``(a+)+``."""
    from re import _parser  # type: ignore[attr-defined]

    repeats = {_parser.MAX_REPEAT, _parser.MIN_REPEAT, getattr(_parser, "POSSESSIVE_REPEAT", None)}

    def walk(items: Any, inside: bool) -> bool:
        for op, av in items:
            if op in repeats:
                _lo, hi, sub = av
                repeats_many = hi is _parser.MAXREPEAT or hi > 1
                if repeats_many and inside:
                    return True
                if walk(sub, inside or repeats_many):
                    return True
            elif op is _parser.SUBPATTERN:
                if walk(av[-1], inside):
                    return True
            elif op is _parser.BRANCH:
                if any(walk(alt, inside) for alt in av[1]):
                    return True
            elif op in (_parser.ASSERT, _parser.ASSERT_NOT):
                if walk(av[1], inside):
                    return True
            elif op is getattr(_parser, "ATOMIC_GROUP", None):
                if walk(av, inside):
                    return True
            elif op is _parser.GROUPREF_EXISTS and (
                walk(av[1], inside) or (av[2] is not None and walk(av[2], inside))
            ):
                return True
        return False

    return walk(_parser.parse(pattern), False)


def compile_regex(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """Compile a rule regex, refusing bad syntax and nested quantifiers."""
    try:
        rx = re.compile(pattern, flags)
    except re.error as exc:
        raise ConditionError(f"invalid regex {pattern!r}: {exc}") from None
    if has_nested_quantifier(pattern):
        raise ConditionError(
            f"regex {pattern!r} has nested quantifiers (catastrophic backtracking risk)"
        )
    return rx


def _literals(value: Any, op: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x for x in items):
        raise ConditionError(f"'{op}' expects a non-empty string or list of non-empty strings")
    return tuple(sorted({x.lower() for x in items}))


def _networks(value: Any, op: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ConditionError(f"'{op}' expects a CIDR or a list of CIDRs")
    nets = []
    for item in items:
        try:
            nets.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise ConditionError(f"'{op}': {item!r} is not a CIDR") from None
    return tuple(nets)


_IP_CACHE: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address | None] = {}


def parse_ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address, cached (the same clients repeat); ``None`` when it is not one."""
    if not text:
        return None
    if text in _IP_CACHE:
        return _IP_CACHE[text]
    try:
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(text)
    except ValueError:
        addr = None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if len(_IP_CACHE) > 65536:
        _IP_CACHE.clear()
    _IP_CACHE[text] = addr
    return addr


def in_networks(
    text: str | None, nets: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    addr = parse_ip(text)
    if addr is None:
        return False
    return any(addr.version == n.version and addr in n for n in nets)


def _number(value: Any, op: str, kind: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConditionError(f"'{op}' expects a number, got {value!r}")
    return float(value) if kind == FLOAT else value


def _text_test(op: str, value: Any) -> tuple[Callable[[Any], bool], tuple[str, ...], bool]:
    if op == "eq":
        if not isinstance(value, str):
            raise ConditionError(f"'eq' on a text field expects a string, got {value!r}")
        return (lambda v: v == value), (), False
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise ConditionError(f"'{op}' expects a list of strings")
        vals = frozenset(value)
        if op == "in":
            return (lambda v: v in vals), (), False
        return (lambda v: v not in vals), (), False
    if op in ("regex", "iregex"):
        if not isinstance(value, str) or not value:
            raise ConditionError(f"'{op}' expects a non-empty string")
        rx = compile_regex(value, re.IGNORECASE if op == "iregex" else 0)
        search = rx.search
        return (lambda v: v is not None and search(v[:MAX_SCAN]) is not None), (), False
    if op == "contains":
        needles = _literals(value, op)
        rx = re.compile("|".join(re.escape(n) for n in needles))
        search = rx.search
        return (lambda v: v is not None and search(v[:MAX_SCAN]) is not None), needles, True
    if op == "prefix":
        needles = _literals(value, op)
        return (lambda v: v is not None and v.startswith(needles)), needles, True
    if op == "suffix":
        needles = _literals(value, op)
        return (lambda v: v is not None and v.endswith(needles)), needles, True
    raise ConditionError(f"unknown operator '{op}' for a text field")


def _num_test(op: str, value: Any, kind: str) -> Callable[[Any], bool]:
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ConditionError(f"'{op}' expects a non-empty list of numbers")
        vals = frozenset(_number(x, op, kind) for x in value)
        if op == "in":
            return lambda v: v in vals
        return lambda v: v is None or v not in vals
    num = _number(value, op, kind)
    if op == "eq":
        return lambda v: v == num
    if op == "gte":
        return lambda v: v is not None and v >= num
    if op == "lte":
        return lambda v: v is not None and v <= num
    if op == "gt":
        return lambda v: v is not None and v > num
    if op == "lt":
        return lambda v: v is not None and v < num
    raise ConditionError(f"unknown operator '{op}' for a numeric field")


def compile_condition(name: str, op: str, value: Any, predicates: frozenset[str]) -> Condition:  # noqa: C901 - one branch per operator
    """One condition; raises ``ConditionError`` with what is wrong."""
    if name in predicates:
        if op != "eq" or not isinstance(value, bool):
            raise ConditionError(f"predicate '{name}' takes only eq = true/false")
        return Condition(name, op, value, (lambda v: v is value))
    kind = FIELDS.get(name)
    if kind is None:
        raise ConditionError(f"unknown field '{name}'")
    if op == "exists":
        if not isinstance(value, bool):
            raise ConditionError("'exists' expects true or false")
        if value:
            return Condition(name, op, value, (lambda v: v is not None and v != ""))
        return Condition(name, op, value, (lambda v: v is None or v == ""))
    if op in IP_OPS:
        if name not in IP_FIELDS:
            raise ConditionError(f"'{op}' applies to client_ip or forwarded_for, not '{name}'")
        nets = _networks(value, op)
        if op == "cidr":
            return Condition(name, op, value, (lambda v: in_networks(v, nets)))
        return Condition(name, op, value, (lambda v: v is None or not in_networks(v, nets)))
    if kind == TEXT:
        if op not in TEXT_OPS:
            raise ConditionError(f"unknown operator '{op}' for text field '{name}'")
        test, needles, lowered = _text_test(op, value)
        return Condition(name, op, value, test, needles, lowered)
    if kind == BOOL:
        if op != "eq" or not isinstance(value, bool):
            raise ConditionError(f"field '{name}' takes only eq = true/false")
        return Condition(name, op, value, (lambda v: bool(v) is value))
    if kind in (INT, FLOAT):
        if op not in NUM_OPS:
            raise ConditionError(f"unknown operator '{op}' for numeric field '{name}'")
        return Condition(name, op, value, _num_test(op, value, kind))
    raise ConditionError(f"field '{name}' cannot be tested")  # pragma: no cover


def compile_where(table: Mapping[str, Any], predicates: frozenset[str]) -> Clause:
    """``{ field = { op = value, ... }, ... }`` → a clause (all must hold).

    Shorthands: ``field = "x"`` is ``eq``, ``field = [..]`` is ``in``, ``pred = true``.
    """
    out: list[Condition] = []
    for name, spec in table.items():
        if isinstance(spec, dict):
            if not spec:
                raise ConditionError(f"field '{name}': empty condition")
            for op, value in spec.items():
                try:
                    out.append(compile_condition(name, op, value, predicates))
                except ConditionError as exc:
                    raise ConditionError(f"field '{name}': {exc}") from None
        else:
            op = "in" if isinstance(spec, list) else "eq"
            try:
                out.append(compile_condition(name, op, spec, predicates))
            except ConditionError as exc:
                raise ConditionError(f"field '{name}': {exc}") from None
    return tuple(out)


def first_failure(clause: Clause, view: EventView) -> Condition | None:
    """The first condition of ``clause`` that does not hold (for ``explain``)."""
    for cond in clause:
        if not cond.check(view):
            return cond
    return None


def clause_holds(clause: Clause, view: EventView) -> bool:
    for cond in clause:
        if not cond.check(view):
            return False
    return True
