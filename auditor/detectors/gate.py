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


def lead(needle: str) -> str | None:
    """The character a literal is indexed by: the rarest one that something follows (so
    the literal-led regex of its group has text after it to test), else ``trigger``."""
    best = None
    last = len(needle) - 1
    for ch in needle:
        pos = RARE.find(ch)
        if pos >= 0 and needle.index(ch) < last and (best is None or pos < RARE.find(best)):
            best = ch
    return best if best is not None else trigger(needle)


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
    """How good a gate the condition makes: lower is better. Returns (score, kind).

    ``pred_names`` are the predicates evaluated through the gates (the others are lazy,
    computed on demand, and cannot gate).
    """
    vals = _status_values(cond)
    if vals is not None:
        if 200 in vals:
            return (80, "status")  # most of the traffic: a method gate beats it
        if vals & _COMMON_STATUS:
            return (70, "status")
        # 404s are a few percent of real traffic: a literal gate is cheaper when there is one.
        return (50, "status") if 404 in vals else (10, "status")
    if cond.field == "target_length" and cond.op in ("gt", "gte"):
        return (10, "length")
    if cond.field in CACHED_FIELDS:
        return (20, "cached")
    if cond.field in URL_FIELDS and cond.op in ("contains", "prefix", "suffix"):
        if cond.op in ("prefix", "suffix") and cond.field != "path":
            return (30, "url") if all(trigger(n) for n in cond.needles) else (90, "none")
        if cond.op == "contains" and not all(trigger(n) or pair(n) for n in cond.needles):
            return (60, "url")  # some literal needs an always-run search
        return (30, "url")
    if cond.field in pred_names and cond.value is True:
        return (40, "pred")
    if cond.field == "method" and cond.op in ("eq", "in") and not isinstance(cond.value, bool):
        methods = {cond.value} if cond.op == "eq" else set(cond.value)
        if "GET" in methods:
            return (85, "field")
        return (75, "field") if methods & _COMMON_METHODS else (50, "field")
    if cond.field in DIRECT_FIELDS and cond.op in ("eq", "in") and not isinstance(cond.value, bool):
        return (60, "field")
    return (90, "none")


def cost(cond: Condition, pred_names: frozenset[str] | set[str]) -> int:
    """Rough evaluation cost, to test cheap conditions of a clause first."""
    if cond.field in DIRECT_FIELDS and not cond.lowered:
        return 0
    if cond.op in ("eq", "in", "not_in", "exists", "gte", "lte", "gt", "lt"):
        return 1 if cond.field not in pred_names else 3
    if cond.op in ("contains", "prefix", "suffix"):
        return 2
    return 4  # regexes, CIDRs, lazy predicates


def trie_pattern(words: Sequence[str]) -> str:
    """A regex matching any of ``words``, factored by common prefixes (no backtracking)."""
    root: dict[str, dict] = {}  # type: ignore[type-arg]
    for w in words:
        node = root
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, dict]) -> str:  # type: ignore[type-arg]
        alts = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if "" in node:
            return "(?:" + body + ")?" if len(alts) == 1 else body[:-1] + ")?"
        return body

    return emit(root)


class Affixes:
    """Path prefixes (or suffixes): one anchored regex match decides if any applies.

    ``str.startswith`` with a tuple of a hundred literals costs microseconds; an anchored
    trie regex costs one call. Suffixes are matched on the reversed path. Which needles
    matched is only worked out when one did (rare).
    """

    def __init__(self, suffix: bool, needles: dict[str, list[int]] | None = None) -> None:
        self.suffix = suffix
        self.items = [(n, tuple(sorted(set(ids)))) for n, ids in sorted((needles or {}).items())]
        words = [n[::-1] if suffix else n for n, _ in self.items]
        self.rx = re.compile(trie_pattern(words)) if words else None

    def __bool__(self) -> bool:
        return self.rx is not None

    def candidates(self, text: str, out: list[int]) -> None:
        rx = self.rx
        if rx is None:
            return
        if self.suffix:
            if rx.match(text[::-1]) is None:
                return
            for needle, ids in self.items:
                if text.endswith(needle):
                    out.extend(ids)
        else:
            if rx.match(text) is None:
                return
            for needle, ids in self.items:
                if text.startswith(needle):
                    out.extend(ids)

    def patterns(self) -> list[str]:
        return [self.rx.pattern] if self.rx is not None else []


def pair(needle: str) -> str | None:
    """A two-character piece of a literal with no letter or digit (``=/`` in ``=/etc/``)."""
    for i in range(len(needle) - 1):
        bigram = needle[i : i + 2]
        if not any(ch.isalnum() for ch in bigram):
            return bigram
    return None


@dataclass
class UrlGate:
    """The literal index over the decoded, lower-cased URL (see module doc)."""

    charset: re.Pattern[str] | None = None
    table: bytes = b""  # translate table: trigger characters (and non-ASCII) → '!', else 'a'
    groups: dict[str, tuple[re.Pattern[str], list[tuple[str, tuple[int, ...]]]]] = field(
        default_factory=dict
    )
    pairs: list[tuple[str, list[tuple[str, tuple[int, ...]]]]] = field(default_factory=list)
    always: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    always_rx: re.Pattern[str] | None = None
    prefixes: Affixes = field(default_factory=lambda: Affixes(False))
    suffixes: Affixes = field(default_factory=lambda: Affixes(True))
    space: bool = False  # some literal has a space: a raw '+' may decode to it

    def rare(self, text: str) -> bool:
        """True when ``text`` holds a trigger character (or anything non-ASCII).

        A translate to 'a'/'!' and ``isalpha`` scan the string in C at a few instructions
        per character; a regex character class costs ~20 times more.
        """
        return not text.encode("utf-8", "surrogatepass").translate(self.table).isalpha()

    def candidates(self, low: str, low_path: str, out: list[int]) -> None:
        """Append the entries whose literals occur in ``low`` (target) / ``low_path``."""
        self.prefixes.candidates(low_path, out)
        self.suffixes.candidates(low_path, out)
        if len(low) > MAX_SCAN:
            low = low[:MAX_SCAN]
        self.pair_candidates(low, out)
        if self.always_rx is not None and self.always_rx.search(low):
            self.always_candidates(low, out)
        if self.charset is not None:
            found = self.charset.findall(low)
            if found:
                self.group_candidates(low, found, out)

    def pair_candidates(self, low: str, out: list[int]) -> None:
        for bigram, items in self.pairs:
            if bigram in low:
                for needle, ids in items:
                    if needle in low:
                        out.extend(ids)

    def always_candidates(self, low: str, out: list[int]) -> None:
        for needle, ids in self.always:
            if needle in low:
                out.extend(ids)

    def group_candidates(self, low: str, found: list[str], out: list[int]) -> None:
        for ch in set(found):
            group = self.groups.get(ch)
            if group is None or group[0].search(low) is None:
                continue
            for needle, ids in group[1]:
                if needle in low:
                    out.extend(ids)

    def patterns(self) -> list[str]:
        pats = [g[0].pattern for g in self.groups.values()]
        pats += self.prefixes.patterns() + self.suffixes.patterns()
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
    length: tuple[tuple[int, tuple[int, ...]], ...] = ()  # (min length, entries)
    min_length: int = 1 << 62

    def patterns(self) -> list[str]:
        return self.url.patterns()


def gate_of(clause: Clause, pred_names: frozenset[str]) -> tuple[str, Condition]:
    """The kind of gate a (non-empty) clause gets, and the condition it gates on."""
    best = min(clause, key=lambda c: _score(c, pred_names)[0])
    return _score(best, pred_names)[1], best


def status_values(cond: Condition) -> frozenset[int]:
    """The status codes a status gate's condition lets through."""
    return _status_values(cond) or frozenset()


def build_plan(entries: list[Entry], pred_names: frozenset[str]) -> Plan:
    status: dict[int | None, list[int]] = {}
    fields: dict[str, dict[object, list[int]]] = {}
    cached: dict[str, list[int]] = {}
    preds: dict[str, list[int]] = {}
    always: list[int] = []
    length: dict[int, list[int]] = {}
    url_conds: list[tuple[int, Condition]] = []
    for e in entries:
        if not e.clause:
            always.append(e.index)
            continue
        kind, best = gate_of(e.clause, pred_names)
        if kind == "status":
            for code in _status_values(best) or ():
                status.setdefault(code, []).append(e.index)
        elif kind == "cached":
            cached.setdefault(best.field, []).append(e.index)
        elif kind == "url":
            url_conds.append((e.index, best))
        elif kind == "length":
            least = int(best.value) + (1 if best.op == "gt" else 0)
            length.setdefault(least, []).append(e.index)
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
        length=tuple(sorted((k, tuple(v)) for k, v in length.items())),
        min_length=min(length, default=1 << 62),
    )


def _build_url(conds: list[tuple[int, Condition]]) -> UrlGate:
    by_needle: dict[str, list[int]] = {}
    prefixes: dict[str, list[int]] = {}
    suffixes: dict[str, list[int]] = {}
    for idx, cond in conds:
        for needle in cond.needles:
            if cond.field == "path" and cond.op == "prefix":
                prefixes.setdefault(needle, []).append(idx)
            elif cond.field == "path" and cond.op == "suffix" and trigger(needle) is None:
                suffixes.setdefault(needle, []).append(idx)
            else:
                by_needle.setdefault(needle, []).append(idx)
    gate = UrlGate()
    groups: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    pairs: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    for needle, ids in sorted(by_needle.items()):
        ch = lead(needle)
        entry = (needle, tuple(sorted(set(ids))))
        if ch is not None:
            groups.setdefault(ch, []).append(entry)
        elif (bigram := pair(needle)) is not None:
            pairs.setdefault(bigram, []).append(entry)
        else:
            gate.always.append(entry)
        if " " in needle:
            gate.space = True
    gate.pairs = sorted(pairs.items())
    for ch, items in groups.items():
        rests = [n[n.index(ch) + 1 :] for n, _ in items]
        gate.groups[ch] = (_literal_led(ch, rests), items)
    chars = set(groups) | {"%"} | ({"+"} if gate.space else set())
    gate.charset = re.compile("[" + "".join(re.escape(c) for c in sorted(chars)) + "]")
    hot = {ord(c) for c in chars if ord(c) < 128}
    gate.table = bytes(33 if (b in hot or b >= 128) else 97 for b in range(256))
    if gate.always:
        gate.always_rx = re.compile(trie_pattern([n for n, _ in gate.always]))
    gate.prefixes = Affixes(False, prefixes)
    gate.suffixes = Affixes(True, suffixes)
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
