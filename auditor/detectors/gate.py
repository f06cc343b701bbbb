"""Cheap prefilters that decide which rule clauses are worth evaluating for an event.

Detection must cost about a microsecond on clean traffic, and Python's ``re`` costs a
few hundred nanoseconds per call whatever the pattern, more for a long alternation. So
every clause gets exactly one *gate*, its most selective condition, and the gates are
compiled together:

- ``status``/``method``/other ``eq``/``in`` conditions: one dict lookup per field;
- ``user_agent``/``referrer`` conditions: evaluated once per distinct value (cached);
- literal ``contains``/``prefix``/``suffix`` on the decoded URL: each literal is indexed
  by its rarest character (``<``, ``(``, ``$``, ``'``, ``.``...). One character-class
  search over the lower-cased target finds which of those are present (usually none),
  then a literal-led regex per character, then plain ``in`` tests. Literals without any
  such character (``/admin``) are path prefixes/suffixes tested with ``str.startswith``;
- a predicate: after predicates are evaluated.

Gates are sound: when a clause holds, its gate passes. They never decide a match.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from auditor.detectors.conditions import Clause, Condition
from auditor.detectors.fields import CACHED_FIELDS, DIRECT_FIELDS, MAX_SCAN, URL_FIELDS

# Rarest first: the character a literal is indexed by. Letters, digits, '/', '-', '=',
# '&' are too common in clean URLs to be useful.
RARE = "`^~|\\{}$<>'\";!()[]*@#: ,._"
_COMMON_STATUS = frozenset(range(200, 400))
_COMMON_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "OPTIONS"})
STATUS_CODES = range(100, 600)


@dataclass(frozen=True, slots=True)
class Entry:
    """One clause of a predicate or a rule; ``owner`` is the predicate name or rule id."""

    index: int
    owner: str
    is_pred: bool
    clause: Clause


def trigger(needle: str) -> str | None:
    """The rarest character of a literal, or ``None`` when it has none of ``RARE``."""
    best = None
    for ch in needle:
        pos = RARE.find(ch)
        if pos >= 0 and (best is None or pos < RARE.find(best)):
            best = ch
    return best


def _status_values(cond: Condition) -> frozenset[int] | None:
    op, v = cond.op, cond.value
    if cond.field == "status":
        if op == "eq":
            return frozenset({v})
        if op == "in":
            return frozenset(v)
        if op in ("gte", "gt", "lte", "lt"):
            return frozenset(c for c in STATUS_CODES if cond.test(c))
    if cond.field == "status_class" and op in ("eq", "in", "gte", "lte", "gt", "lt"):
        return frozenset(c for c in STATUS_CODES if cond.test(c // 100))
    return None


def _score(cond: Condition, pred_names: frozenset[str]) -> tuple[int, str]:
    """Lower is better. Returns (score, kind)."""
    if _status_values(cond) is not None:
        vals = _status_values(cond) or frozenset()
        return (1, "status") if not vals & _COMMON_STATUS else (7, "status")
    if cond.field in CACHED_FIELDS:
        return (2, "cached")
    if cond.field in URL_FIELDS and cond.op in ("contains", "prefix", "suffix"):
        if cond.op == "prefix" and cond.field != "path":
            return (3, "url") if all(trigger(n) for n in cond.needles) else (9, "none")
        if cond.op == "suffix" and cond.field != "path":
            return (3, "url") if all(trigger(n) for n in cond.needles) else (9, "none")
        if cond.op == "contains" and not all(trigger(n) for n in cond.needles):
            return (6, "url")  # some literal needs an always-run search
        return (3, "url")
    if cond.field in pred_names and cond.value is True:
        return (4, "pred")
    if cond.field == "method" and cond.op in ("eq", "in") and not isinstance(cond.value, bool):
        vals = {cond.value} if cond.op == "eq" else set(cond.value)
        return (5, "field") if not vals & _COMMON_METHODS else (8, "field")
    if cond.field in DIRECT_FIELDS and cond.op in ("eq", "in") and not isinstance(cond.value, bool):
        return (6, "field")
    return (9, "none")


@dataclass
class UrlGate:
    """The literal index over the decoded, lower-cased URL (see module doc)."""

    charset: re.Pattern[str] | None = None
    groups: dict[str, tuple[re.Pattern[str], list[tuple[str, tuple[int, ...]]]]] = field(
        default_factory=dict
    )
    always: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    always_rx: re.Pattern[str] | None = None
    prefixes: tuple[str, ...] = ()
    prefix_ids: dict[str, tuple[int, ...]] = field(default_factory=dict)
    suffixes: tuple[str, ...] = ()
    suffix_ids: dict[str, tuple[int, ...]] = field(default_factory=dict)
    space: bool = False  # some literal has a space: a raw '+' may decode to it

    def candidates(self, low: str, low_path: str, out: list[int]) -> None:
        """Append the entries whose literals occur in ``low`` (target) / ``low_path``."""
        if self.prefixes and low_path.startswith(self.prefixes):
            for p in self.prefixes:
                if low_path.startswith(p):
                    out.extend(self.prefix_ids[p])
        if self.suffixes and low_path.endswith(self.suffixes):
            for s in self.suffixes:
                if low_path.endswith(s):
                    out.extend(self.suffix_ids[s])
        if len(low) > MAX_SCAN:
            low = low[:MAX_SCAN]
        if self.always_rx is not None and self.always_rx.search(low):
            for needle, ids in self.always:
                if needle in low:
                    out.extend(ids)
        if self.charset is None:
            return
        found = self.charset.findall(low)
        if not found:
            return
        for ch in set(found):
            group = self.groups.get(ch)
            if group is None or group[0].search(low) is None:
                continue
            for needle, ids in group[1]:
                if needle in low:
                    out.extend(ids)

    def patterns(self) -> list[str]:
        pats = [g[0].pattern for g in self.groups.values()]
        if self.charset is not None:
            pats.append(self.charset.pattern)
        if self.always_rx is not None:
            pats.append(self.always_rx.pattern)
        return pats


def _literal_led(ch: str, rests: Sequence[str]) -> re.Pattern[str]:
    alts = sorted({re.escape(r[:12]) for r in rests if r})
    if not alts or any(not r for r in rests):
        return re.compile(re.escape(ch))
    return re.compile(re.escape(ch) + "(?:" + "|".join(alts) + ")")


@dataclass
class Plan:
    """All gates of a rule set, and the entries they lead to."""

    entries: list[Entry]
    status: dict[int | None, tuple[int, ...]]
    fields: dict[str, dict[object, tuple[int, ...]]]
    cached: dict[str, list[int]]  # field → entries with a condition on it
    url: UrlGate
    url_entries: tuple[int, ...]
    preds: dict[str, tuple[int, ...]]
    always: tuple[int, ...]

    def patterns(self) -> list[str]:
        return self.url.patterns()


def build_plan(entries: list[Entry], pred_names: frozenset[str]) -> Plan:
    status: dict[int | None, list[int]] = {}
    fields: dict[str, dict[object, list[int]]] = {}
    cached: dict[str, list[int]] = {}
    preds: dict[str, list[int]] = {}
    always: list[int] = []
    url_conds: list[tuple[int, Condition]] = []
    for e in entries:
        if not e.clause:
            always.append(e.index)
            continue
        best = min(e.clause, key=lambda c: _score(c, pred_names)[0])
        kind = _score(best, pred_names)[1]
        if kind == "status":
            for code in _status_values(best) or ():
                status.setdefault(code, []).append(e.index)
        elif kind == "cached":
            cached.setdefault(best.field, []).append(e.index)
        elif kind == "url":
            url_conds.append((e.index, best))
        elif kind == "pred":
            preds.setdefault(best.field, []).append(e.index)
        elif kind == "field":
            values = [best.value] if best.op == "eq" else list(best.value)
            table = fields.setdefault(best.field, {})
            for v in values:
                table.setdefault(v, []).append(e.index)
        else:
            always.append(e.index)
    url = _build_url(url_conds)
    return Plan(
        entries=entries,
        status={k: tuple(v) for k, v in status.items()},
        fields={f: {k: tuple(v) for k, v in t.items()} for f, t in fields.items()},
        cached=cached,
        url=url,
        url_entries=tuple(sorted({i for i, _ in url_conds})),
        preds={k: tuple(v) for k, v in preds.items()},
        always=tuple(always),
    )


def _build_url(conds: list[tuple[int, Condition]]) -> UrlGate:
    by_needle: dict[str, list[int]] = {}
    prefixes: dict[str, list[int]] = {}
    suffixes: dict[str, list[int]] = {}
    for idx, cond in conds:
        for needle in cond.needles:
            if trigger(needle) is None and cond.field == "path" and cond.op == "prefix":
                prefixes.setdefault(needle, []).append(idx)
            elif trigger(needle) is None and cond.field == "path" and cond.op == "suffix":
                suffixes.setdefault(needle, []).append(idx)
            else:
                by_needle.setdefault(needle, []).append(idx)
    gate = UrlGate()
    groups: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    for needle, ids in sorted(by_needle.items()):
        ch = trigger(needle)
        entry = (needle, tuple(sorted(set(ids))))
        if ch is None:
            gate.always.append(entry)
        else:
            groups.setdefault(ch, []).append(entry)
        if " " in needle:
            gate.space = True
    for ch, items in groups.items():
        rests = [n[n.index(ch) + 1 :] for n, _ in items]
        gate.groups[ch] = (_literal_led(ch, rests), items)
    if groups:
        gate.charset = re.compile("[" + "".join(re.escape(c) for c in sorted(groups)) + "]")
    if gate.always:
        gate.always_rx = re.compile("|".join(re.escape(n) for n, _ in gate.always))
    gate.prefixes = tuple(sorted(prefixes))
    gate.prefix_ids = {k: tuple(sorted(set(v))) for k, v in prefixes.items()}
    gate.suffixes = tuple(sorted(suffixes))
    gate.suffix_ids = {k: tuple(sorted(set(v))) for k, v in suffixes.items()}
    return gate


class CachedGate:
    """Per distinct value of a repeating field: which entries' conditions on it hold."""

    def __init__(
        self,
        name: str,
        entries: list[Entry],
        ids: list[int],
        normalize: Callable[[str | None], str | None],
        size: int = 4096,
    ) -> None:
        self.name = name
        self.normalize = normalize
        self.items = [(i, tuple(c for c in entries[i].clause if c.field == name)) for i in ids]
        self.cache: dict[str | None, tuple[int, ...]] = {}
        self.size = size

    def candidates(self, raw: str | None) -> tuple[int, ...]:
        got = self.cache.get(raw)
        if got is not None:
            return got
        value = self.normalize(raw)
        low = value.lower() if value is not None else None
        out = []
        for idx, conds in self.items:
            for c in conds:
                v = low if c.lowered else value
                if not c.test(v):
                    break
            else:
                out.append(idx)
        result = tuple(out)
        if len(self.cache) >= self.size:
            self.cache.clear()
        self.cache[raw] = result
        return result
