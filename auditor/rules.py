"""Rule files (TOML) → a validated, frozen ``RuleSet``.

A rule file holds ``[[predicate]]`` tables (named conditions shared by rules, such as
``auth_failure``) and ``[[rule]]`` tables. A rule is stateless (conditions only), a
threshold rule (conditions plus ``threshold = {count|distinct|burst, within|leak, by}``),
or detector-backed (``detector = "pii"`` with ``params``) for logic conditions cannot say.
Every problem raises ``RulesetError("file: rule 'id': key 'x': what is wrong")``. Operators
tune bundled rules through the config's ``[rules.override.<id>]`` (``RuleOverride``):
disable, severity, params, allow-lists, without editing the shipped files.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditor.config import RuleOverride
from auditor.detectors.conditions import (
    Clause,
    ConditionError,
    compile_regex,
    compile_where,
    in_networks,
)
from auditor.detectors.fields import FIELDS, EventView
from auditor.detectors.params import (
    PREDICATE_PARAMS,
    SCHEMAS,
    ParamError,
    format_duration,
    parse_duration,
    parse_params,
)
from auditor.errors import RulesetError
from auditor.model import CATEGORIES, Severity
from auditor.ruleset import RuleSet as RuleSet  # noqa: PLC0414 - re-exported: see there

ENV_RULESETS = "LOG_AUDITOR_RULESETS"
_RULE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")
_PRED_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_CONTROL = re.compile(
    r"(?:PCI-DSS-(?:4\.0\.1|3\.2\.1):\d{1,2}(?:\.\d{1,2}){0,4}"
    r"|GDPR:Art\.\d{1,2}(?:\(\d\))?(?:\([a-z]\))?"
    r"|OWASP-API-2023:API(?:[1-9]|10)"
    r"|[A-Z][A-Za-z0-9-]{1,30}:[A-Za-z0-9.()_-]{1,40})"
)
# A control naming one of our frameworks must be spelt exactly (the report groups by it);
# the generic FRAMEWORK:ID form is for an operator's own frameworks.
_KNOWN_FRAMEWORK = re.compile(r"(?i)(?:PCI|GDPR|OWASP)")
_KNOWN_CONTROL = re.compile(_CONTROL.pattern.rsplit("|", 1)[0] + ")")
_THRESHOLD_KEYS = ("count", "distinct", "burst", "within", "leak", "by", "of", "min_count")
_EVIDENCE = ("target", "user_agent", "referrer")
DEFAULT_FORMAT = "nginx-combined"
VARY_FIELDS = ("client_ip", "user_name", "path_id")


@dataclass(frozen=True, slots=True)
class Threshold:
    """A windowed condition on the matching events of one key.

    ``count``: at least ``n`` events within ``window`` s. ``distinct``: at least ``n``
    different values of ``of`` within ``window`` s (and ``min_count`` events). ``burst``: a
    leaky bucket of capacity ``n`` draining one event per ``window`` s (CrowdSec style).
    """

    kind: str
    n: int
    window: float
    by: tuple[str, ...]
    of: str | None = None
    min_count: int = 0

    def describe(self) -> str:
        by = "+".join(self.by)
        if self.kind == "count":
            return f"{self.n} within {format_duration(self.window)} by {by}"
        if self.kind == "distinct":
            extra = f", at least {self.min_count} events" if self.min_count else ""
            return (
                f"{self.n} distinct {self.of} within {format_duration(self.window)} by {by}{extra}"
            )
        return (
            f"more than {self.n} in a burst, leaking 1 per {format_duration(self.window)} by {by}"
        )


@dataclass(frozen=True, slots=True)
class Allow:
    """Per-rule allow-lists: events that match any of them never count or fire."""

    paths: tuple[re.Pattern[str], ...] = ()
    cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    user_agents: tuple[re.Pattern[str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.paths or self.cidrs or self.user_agents)

    def allows(self, view: EventView) -> bool:
        """True when the event is allow-listed for this rule."""
        if self.cidrs and in_networks(view.ev.client_ip, self.cidrs):
            return True
        if self.paths:
            path = view.get("path")
            if any(rx.search(path) for rx in self.paths):
                return True
        if self.user_agents:
            ua = view.get("user_agent")
            if ua and any(rx.search(ua) for rx in self.user_agents):
                return True
        return False


@dataclass(frozen=True, slots=True)
class Escalation:
    clause: Clause
    severity: Severity


@dataclass(frozen=True, slots=True)
class ExamplePart:
    """Lines of an example, repeated; ``step`` re-times them (seconds apart), ``vary`` alters."""

    lines: tuple[str, ...]
    repeat: int = 1
    step: float | None = None
    vary: tuple[str, ...] = ()
    pad_path: int = 0  # append this many characters to the path (length rules)


@dataclass(frozen=True, slots=True)
class Example:
    parts: tuple[ExamplePart, ...]
    fires: bool
    format: str = DEFAULT_FORMAT
    note: str = ""
    index: int = 0


@dataclass(frozen=True, slots=True)
class Predicate:
    """A named condition (OR of clauses) that rules test as ``name = true``."""

    name: str
    description: str
    clauses: tuple[Clause, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    severity: Severity
    category: str
    description: str
    remediation: str
    controls: tuple[str, ...]
    file: str
    clauses: tuple[Clause, ...] = ()  # OR of ANDs; empty means "every event"
    unless: tuple[Clause, ...] = ()
    threshold: Threshold | None = None
    detector: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    key: tuple[str, ...] = ("client_ip",)
    escalate: tuple[Escalation, ...] = ()
    allow: Allow = Allow()
    episode_gap_s: int = 3600
    evidence: str = "target"
    examples: tuple[Example, ...] = ()

    @property
    def kind(self) -> str:
        if self.detector is not None:
            return f"detector:{self.detector}"
        return "threshold" if self.threshold is not None else "stateless"

    @property
    def fingerprint(self) -> str:
        """Changes when the rule's state would mean something else (for restore)."""
        params = sorted((k, _stable(v)) for k, v in self.params.items())
        text = repr((self.threshold, self.detector, params, self.key))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stable(value: object) -> object:
    """A value whose repr is the same in every process (a set's order is not: string
    hashing is salted per process), so a fingerprint survives a restart."""
    if isinstance(value, set | frozenset):
        return ("set", sorted(repr(_stable(v)) for v in value))
    if isinstance(value, dict):
        return ("dict", sorted((repr(k), repr(_stable(v))) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return type(value)(_stable(v) for v in value)
    return value


# --- locating ------------------------------------------------------------------------------


def bundled_rules_dir() -> Path:
    """The shipped ``rulesets/``: ``$LOG_AUDITOR_RULESETS``, beside the package, or installed."""
    env = os.environ.get(ENV_RULESETS)
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parent.parent / "rulesets")
    candidates.append(Path(sys.prefix) / "share" / "log-auditor" / "rulesets")
    for cand in candidates:
        if cand.is_dir():
            return cand
    where = ", ".join(str(c) for c in candidates)
    raise RulesetError(f"bundled rulesets not found (looked in {where}); set {ENV_RULESETS}")


def _bundled_files() -> frozenset[Path]:
    """The shipped rule files (resolved), to name a clash with one of them clearly."""
    try:
        return frozenset(p.resolve() for p in bundled_rules_dir().glob("*.toml"))
    except RulesetError:
        return frozenset()


def rule_files(paths: Sequence[Path]) -> list[Path]:
    """Files to load: each path as given, directories as their sorted ``*.toml``."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(p.glob("*.toml")))
        elif p.exists():
            out.append(p)
        else:
            raise RulesetError(f"{p}: rule file or directory not found")
    return out


# --- parsing helpers -----------------------------------------------------------------------


class _Where:
    """Error context: file, rule, key."""

    def __init__(self, file: str, rule: str | None = None) -> None:
        self.file, self.rule = file, rule

    def err(self, key: str | None, what: str) -> RulesetError:
        parts = [self.file]
        if self.rule is not None:
            parts.append(self.rule)
        if key is not None:
            parts.append(f"key '{key}'")
        parts.append(what)
        return RulesetError(": ".join(parts))


def _take(
    table: dict[str, Any], key: str, kind: type | tuple[type, ...], w: _Where, default: Any = None
) -> Any:
    if key not in table:
        return default
    value = table[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise w.err(key, f"expected {names}, got {type(value).__name__} {value!r}")
    return value


def _require(table: dict[str, Any], key: str, kind: type, w: _Where) -> Any:
    if key not in table:
        raise w.err(key, "is required")
    value = _take(table, key, kind, w)
    if isinstance(value, str) and not value.strip():
        raise w.err(key, "must not be empty")
    return value


def _unknown(table: dict[str, Any], allowed: Sequence[str], w: _Where, prefix: str = "") -> None:
    for key in table:
        if key not in allowed:
            raise w.err(f"{prefix}{key}", f"unknown key (known: {', '.join(allowed)})")


def _clause(value: Any, key: str, w: _Where, preds: frozenset[str]) -> Clause:
    if not isinstance(value, dict) or not value:
        raise w.err(key, "expected a non-empty table of field = { op = value }")
    try:
        return compile_where(value, preds)
    except ConditionError as exc:
        raise w.err(key, str(exc)) from None


def _clauses(rule: dict[str, Any], w: _Where, preds: frozenset[str]) -> tuple[Clause, ...]:
    where = _clause(rule["where"], "where", w, preds) if "where" in rule else ()
    alts = _take(rule, "any", list, w)
    if alts is None:
        return (where,) if where else ()
    if not alts:
        raise w.err("any", "expected a non-empty list of condition tables")
    return tuple(where + _clause(a, f"any[{i}]", w, preds) for i, a in enumerate(alts))


def _threshold(table: Any, w: _Where) -> Threshold:
    if not isinstance(table, dict):
        raise w.err(
            "threshold", "expected a table such as { count = 5, within = '10m', by = 'client_ip' }"
        )
    _unknown(table, _THRESHOLD_KEYS, w, "threshold.")
    kinds = [k for k in ("count", "distinct", "burst") if k in table]
    if len(kinds) != 1:
        raise w.err("threshold", "needs exactly one of count, distinct or burst")
    kind = kinds[0]
    n = table[kind]
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100000:
        raise w.err(f"threshold.{kind}", f"expected an integer from 1 to 100000, got {n!r}")
    span_key = "leak" if kind == "burst" else "within"
    other = "within" if kind == "burst" else "leak"
    if other in table:
        raise w.err(f"threshold.{other}", f"not used by a '{kind}' threshold (use '{span_key}')")
    if span_key not in table:
        raise w.err(f"threshold.{span_key}", "is required")
    try:
        window = parse_duration(table[span_key])
    except ParamError as exc:
        raise w.err(f"threshold.{span_key}", str(exc)) from None
    by = _by(table.get("by", "client_ip"), "threshold.by", w)
    of = table.get("of")
    if kind == "distinct":
        if not isinstance(of, str) or of not in FIELDS:
            raise w.err("threshold.of", f"a distinct threshold needs of = <field>, got {of!r}")
    elif of is not None:
        raise w.err("threshold.of", "only a distinct threshold counts distinct values")
    min_count = table.get("min_count", 0)
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 0:
        raise w.err("threshold.min_count", f"expected a non-negative integer, got {min_count!r}")
    if min_count and kind != "distinct":
        raise w.err("threshold.min_count", "only applies to a distinct threshold")
    return Threshold(kind, n, window, by, of, min_count)


def _by(value: Any, key: str, w: _Where) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(x, str) for x in names):
        raise w.err(key, f"expected a field name or a list of field names, got {value!r}")
    for name in names:
        if name not in FIELDS:
            raise w.err(key, f"unknown field '{name}'")
    return tuple(names)


def _allow(table: Any, w: _Where, key: str = "allow", base: Allow = Allow()) -> Allow:
    if table is None:
        return base
    if isinstance(table, RuleOverride):
        raw = {
            "paths": list(table.allow_paths),
            "cidrs": list(table.allow_cidrs),
            "user_agents": list(table.allow_user_agents),
        }
    elif isinstance(table, dict):
        _unknown(table, ("paths", "cidrs", "user_agents"), w, f"{key}.")
        raw = table
    else:
        raise w.err(key, "expected a table with paths, cidrs and user_agents lists")
    paths, cidrs, uas = list(base.paths), list(base.cidrs), list(base.user_agents)
    for sub, out in (("paths", paths), ("user_agents", uas)):
        for pattern in raw.get(sub, []):
            try:
                out.append(compile_regex(str(pattern)))
            except ConditionError as exc:
                raise w.err(f"{key}.{sub}", str(exc)) from None
    for text in raw.get("cidrs", []):
        try:
            cidrs.append(ipaddress.ip_network(str(text), strict=False))
        except ValueError:
            raise w.err(f"{key}.cidrs", f"{text!r} is not a CIDR") from None
    return Allow(tuple(paths), tuple(cidrs), tuple(uas))


def _severity(value: Any, key: str, w: _Where) -> Severity:
    try:
        return Severity.parse(str(value))
    except KeyError:
        raise w.err(key, f"must be low, medium, high or critical, got {value!r}") from None


def _example(raw: Any, i: int, w: _Where) -> Example:
    key = f"example[{i}]"
    if not isinstance(raw, dict):
        raise w.err(key, "expected a table ([[rule.example]])")
    allowed = (
        "line",
        "lines",
        "sequence",
        "repeat",
        "step",
        "vary",
        "pad_path",
        "format",
        "fires",
        "note",
    )
    _unknown(raw, allowed, w, f"{key}.")
    fires = raw.get("fires")
    if not isinstance(fires, bool):
        raise w.err(f"{key}.fires", "is required: true or false")
    fmt = raw.get("format", DEFAULT_FORMAT)
    if not isinstance(fmt, str):
        raise w.err(f"{key}.format", "expected a format name")
    if "sequence" in raw:
        if any(k in raw for k in ("line", "lines", "repeat", "step", "vary", "pad_path")):
            raise w.err(key, "use either sequence = [...] or line/lines with repeat/step/vary")
        seq = raw["sequence"]
        if not isinstance(seq, list) or not seq:
            raise w.err(f"{key}.sequence", "expected a non-empty list of tables")
        parts = tuple(_part(p, f"{key}.sequence[{j}]", w) for j, p in enumerate(seq))
    else:
        parts = (_part(raw, key, w, outer=True),)
    note = raw.get("note", "")
    return Example(parts, fires, fmt, str(note), i)


def _part(raw: Any, key: str, w: _Where, outer: bool = False) -> ExamplePart:
    if not isinstance(raw, dict):
        raise w.err(key, "expected a table")
    if not outer:
        _unknown(raw, ("line", "lines", "repeat", "step", "vary", "pad_path"), w, f"{key}.")
    if ("line" in raw) == ("lines" in raw):
        raise w.err(key, "needs exactly one of line or lines")
    lines = [raw["line"]] if "line" in raw else raw["lines"]
    if not isinstance(lines, list) or not lines or not all(isinstance(x, str) for x in lines):
        raise w.err(f"{key}.lines", "expected a non-empty list of log lines")
    repeat = raw.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= 100000:
        raise w.err(f"{key}.repeat", f"expected an integer from 1 to 100000, got {repeat!r}")
    step = None
    if "step" in raw:
        try:
            step = parse_duration(raw["step"]) if raw["step"] not in (0, "0s") else 0.0
        except ParamError as exc:
            raise w.err(f"{key}.step", str(exc)) from None
    vary = raw.get("vary", [])
    vary = [vary] if isinstance(vary, str) else vary
    if not isinstance(vary, list) or any(v not in VARY_FIELDS for v in vary):
        raise w.err(f"{key}.vary", f"expected a list of {', '.join(VARY_FIELDS)}")
    pad = raw.get("pad_path", 0)
    if isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad <= 1_000_000:
        raise w.err(f"{key}.pad_path", f"expected an integer from 0 to 1000000, got {pad!r}")
    return ExamplePart(tuple(lines), repeat, step, tuple(vary), pad)


# --- files ---------------------------------------------------------------------------------


def _load_toml(path: Path) -> tuple[bytes, dict[str, Any]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RulesetError(f"{path}: cannot read rule file: {exc.strerror or exc}") from None
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise RulesetError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            msg = msg[: m.start()].strip()
            raise RulesetError(f"{path}:{m.group(1)}: invalid TOML: {msg}") from None
        raise RulesetError(f"{path}: invalid TOML: {msg}") from None
    return data, doc


def _predicates(
    docs: Sequence[tuple[Path, dict[str, Any]]],
) -> dict[str, Predicate]:
    raw: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for path, doc in docs:
        items = doc.get("predicate", [])
        if not isinstance(items, list):
            raise RulesetError(f"{path}: key 'predicate': expected [[predicate]] tables")
        for i, item in enumerate(items):
            w = _Where(str(path), f"predicate[{i}]")
            if not isinstance(item, dict):
                raise w.err(None, "expected a table")
            name = _require(item, "name", str, w)
            if not _PRED_NAME.fullmatch(name) or name in FIELDS:
                raise w.err("name", f"{name!r} must be lower_snake_case and not a field name")
            raw.setdefault(name, []).append((str(path), item))
    names = frozenset(raw)
    out: dict[str, Predicate] = {}
    for name, defs in raw.items():
        clauses: list[Clause] = []
        description = ""
        for file, item in defs:
            w = _Where(file, f"predicate '{name}'")
            _unknown(item, ("name", "description", "where", "any"), w)
            description = description or str(item.get("description", ""))
            got = _clauses(item, w, names - {name})
            if not got:
                raise w.err(None, "needs where = {...} or any = [...]")
            clauses.extend(got)
        out[name] = Predicate(name, description, tuple(clauses))
    order = _topological(out, docs[0][0] if docs else Path("?"))
    return {name: out[name] for name in order}


def predicate_deps(pred: Predicate, names: frozenset[str] | set[str]) -> set[str]:
    """The predicates ``pred`` tests."""
    return {c.field for clause in pred.clauses for c in clause if c.field in names}


def _topological(preds: dict[str, Predicate], where: Path) -> list[str]:
    """Predicates ordered so that each comes after those it tests; cycles are errors."""
    names = set(preds)
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*chain, name])
            raise RulesetError(f"{where}: predicate '{name}': predicates test each other ({cycle})")
        state[name] = 1
        for dep in sorted(predicate_deps(preds[name], names)):
            visit(dep, [*chain, name])
        state[name] = 2
        order.append(name)

    for name in preds:
        visit(name, [])
    return order


_RULE_KEYS = (
    "id",
    "title",
    "severity",
    "category",
    "description",
    "remediation",
    "controls",
    "where",
    "any",
    "unless",
    "threshold",
    "detector",
    "params",
    "key",
    "escalate",
    "allow",
    "episode_gap",
    "evidence",
    "example",
)


def _rule(item: Any, index: int, file: str, preds: frozenset[str], ov: RuleOverride | None) -> Rule:  # noqa: C901 - one flat validation pass
    w = _Where(file, f"rule[{index}]")
    if not isinstance(item, dict):
        raise w.err(None, "expected a table ([[rule]])")
    rule_id = _require(item, "id", str, w)
    if not _RULE_ID.fullmatch(rule_id):
        raise w.err("id", f"{rule_id!r} must match [a-z0-9][a-z0-9._-]*")
    w = _Where(file, f"rule '{rule_id}'")
    _unknown(item, _RULE_KEYS, w)
    title = _require(item, "title", str, w)
    severity = _severity(_require(item, "severity", str, w), "severity", w)
    category = _require(item, "category", str, w)
    if category not in CATEGORIES:
        raise w.err("category", f"{category!r} is not one of {', '.join(CATEGORIES)}")
    description = _require(item, "description", str, w)
    remediation = _require(item, "remediation", str, w)
    controls = _take(item, "controls", list, w)
    if not controls or not all(isinstance(c, str) for c in controls):
        raise w.err("controls", "expected a non-empty list such as ['PCI-DSS-4.0.1:10.2.1.4']")
    for c in controls:
        known = _KNOWN_FRAMEWORK.match(c) is not None
        if not (_KNOWN_CONTROL if known else _CONTROL).fullmatch(c):
            raise w.err("controls", f"{c!r} is not FRAMEWORK:ID (e.g. 'OWASP-API-2023:API2')")
    clauses = _clauses(item, w, preds)
    unless_raw = _take(item, "unless", list, w, [])
    unless = tuple(_clause(u, f"unless[{i}]", w, preds) for i, u in enumerate(unless_raw))
    detector = _take(item, "detector", str, w)
    params_raw = dict(_take(item, "params", dict, w, {}))
    threshold_raw = item.get("threshold")
    episode_raw = item.get("episode_gap", "1h")
    if ov is not None and ov.params:
        op = dict(ov.params)
        if "episode_gap" in op:
            episode_raw = op.pop("episode_gap")
        if detector is not None:
            params_raw.update(op)
        elif threshold_raw is not None and isinstance(threshold_raw, dict):
            bad = [k for k in op if k not in _THRESHOLD_KEYS]
            if bad:
                raise w.err(
                    f"params.{bad[0]}",
                    f"unknown param (threshold keys: {', '.join(_THRESHOLD_KEYS)})",
                )
            threshold_raw = {**threshold_raw, **op}
            switched = [kd for kd in ("count", "distinct", "burst") if kd in op]
            for kd in switched:  # an override may switch kind: drop the others
                for other in ("count", "distinct", "burst"):
                    if other != kd and other not in op:
                        threshold_raw.pop(other, None)
        elif op:
            raise w.err(f"params.{next(iter(op))}", "this rule has no parameters")
    threshold = None
    params: dict[str, Any] = {}
    if detector is not None:
        if detector not in SCHEMAS:
            raise w.err("detector", f"unknown detector {detector!r} (known: {', '.join(SCHEMAS)})")
        if threshold_raw is not None:
            raise w.err("threshold", "a detector rule cannot also have a threshold")
        if clauses or unless:
            raise w.err("where", "a detector rule takes params, not conditions")
        try:
            params = parse_params(detector, params_raw)
        except ParamError as exc:
            raise w.err("params", str(exc)) from None
        for det, name in PREDICATE_PARAMS:
            if det == detector and params[name] not in preds:
                raise w.err(f"params.{name}", f"no predicate named {params[name]!r}")
    else:
        if params_raw:
            raise w.err("params", "only detector rules take params")
        if threshold_raw is not None:
            threshold = _threshold(threshold_raw, w)
        if not clauses:
            raise w.err("where", "a rule needs conditions (where/any) or a detector")
    key = _by(item["key"], "key", w) if "key" in item else ("client_ip",)
    escalate: list[Escalation] = []
    for i, esc in enumerate(_take(item, "escalate", list, w, [])):
        k = f"escalate[{i}]"
        if not isinstance(esc, dict) or set(esc) != {"when", "severity"}:
            raise w.err(k, "expected { when = {...}, severity = '...' }")
        escalate.append(
            Escalation(
                _clause(esc["when"], f"{k}.when", w, preds),
                _severity(esc["severity"], f"{k}.severity", w),
            )
        )
    allow = _allow(item.get("allow"), w)
    if ov is not None:
        allow = _allow(ov, _Where("config", f"rule '{rule_id}'"), "override.allow", allow)
        if ov.severity:
            severity = _severity(ov.severity, "override.severity", w)
    try:
        episode = int(parse_duration(episode_raw))
    except ParamError as exc:
        raise w.err("episode_gap", str(exc)) from None
    evidence = _take(item, "evidence", str, w, "target")
    if evidence not in _EVIDENCE:
        raise w.err("evidence", f"expected one of {', '.join(_EVIDENCE)}")
    raw_examples = _take(item, "example", list, w, [])
    examples = tuple(_example(e, i, w) for i, e in enumerate(raw_examples))
    return Rule(
        id=rule_id,
        title=title,
        severity=severity,
        category=category,
        description=description.strip(),
        remediation=remediation.strip(),
        controls=tuple(controls),
        file=file,
        clauses=clauses,
        unless=unless,
        threshold=threshold,
        detector=detector,
        params=params,
        key=key,
        escalate=tuple(escalate),
        allow=allow,
        episode_gap_s=max(1, episode),
        evidence=evidence,
        examples=examples,
    )


def _read_doc(path: Path) -> tuple[bytes, dict[str, Any]]:
    data, doc = _load_toml(path)
    _unknown(doc, ("ruleset", "rule", "predicate"), _Where(str(path)))
    meta = doc.get("ruleset", {})
    if not isinstance(meta, dict):
        raise RulesetError(f"{path}: key 'ruleset': expected a table")
    _unknown(meta, ("name", "description"), _Where(str(path)), "ruleset.")
    return data, doc


def _rule_ids(doc: dict[str, Any]) -> list[str]:
    items = doc.get("rule", [])
    if not isinstance(items, list):
        return []
    return [i["id"] for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)]


def _duplicate(path: Path, rule_id: str, other: str, bundled: bool) -> RulesetError:
    if bundled:
        return RulesetError(
            f"{path}: rule '{rule_id}': key 'id': '{rule_id}' is already a bundled rule"
            f" (in {other}); choose another id, or tune the bundled rule with"
            f' [rules.override."{rule_id}"] in the config'
        )
    return RulesetError(f"{path}: rule '{rule_id}': key 'id': duplicate (also in {other})")


def load_rulesets(
    paths: Sequence[Path],
    overrides: Mapping[str, RuleOverride] | None = None,
    context: Sequence[Path] = (),
) -> RuleSet:
    """Load rule files and directories in order, apply the config's overrides, validate all.

    ``context`` files (``rules check`` of an operator's own file: the bundled rulesets) lend
    their predicates and reserve their rule ids, but their rules are not loaded.
    """
    overrides = dict(overrides or {})
    files = rule_files(paths)
    listed = {f.resolve() for f in files}
    ctx_files = [f for f in rule_files(context) if f.resolve() not in listed]
    digest = hashlib.sha256()
    docs: list[tuple[Path, dict[str, Any]]] = []
    for path in files:
        data, doc = _read_doc(path)
        digest.update(str(path.name).encode() + b"\0" + data + b"\0")
        docs.append((path, doc))
    ctx_docs = [(path, _read_doc(path)[1]) for path in ctx_files]
    predicates = _predicates([*docs, *ctx_docs])
    pred_names = frozenset(predicates)
    bundled = _bundled_files()
    rules: list[Rule] = []
    seen: dict[str, str] = {rid: str(path) for path, doc in ctx_docs for rid in _rule_ids(doc)}
    disabled: list[str] = []
    for path, doc in docs:
        items = doc.get("rule", [])
        if not isinstance(items, list):
            raise RulesetError(f"{path}: key 'rule': expected [[rule]] tables")
        for i, item in enumerate(items):
            rid = item.get("id") if isinstance(item, dict) else None
            ov = overrides.get(rid) if isinstance(rid, str) else None
            rule = _rule(item, i, str(path), pred_names, ov)
            if rule.id in seen:
                other = seen[rule.id]
                clash = Path(other).resolve() in bundled and path.resolve() not in bundled
                raise _duplicate(path, rule.id, other, clash)
            seen[rule.id] = str(path)
            if ov is not None and ov.disabled:
                disabled.append(rule.id)
                continue
            rules.append(rule)
    loaded = {r.id for r in rules} | set(disabled)
    for rid in overrides:
        if rid not in loaded:
            raise RulesetError(
                f"config: rules.override '{rid}': no such rule in the loaded rule files"
            )
    return RuleSet(tuple(rules), predicates, tuple(files), digest.hexdigest(), tuple(disabled))
