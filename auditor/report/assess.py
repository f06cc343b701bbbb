"""Control results: findings and data coverage → pass / fail / needs review / not assessable.

Pure. The order of the checks is the policy: what logs cannot show is never assessed;
a finding that means "not met" fails; any other finding needs review; a partial control
needs review; a full control passes only when a rule tests it, the period has data, the
data has no gaps (no stretch without data, no data lost before it was read) and the format
records what the check needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import cache

from auditor.model import Severity
from auditor.report.controls import (
    ALIAS_INDEX,
    CONTROL_BY_ID,
    CONTROLS,
    FRAMEWORKS,
    Assess,
    Control,
)
from auditor.store.report_queries import FindingRow

PERSONAL_TYPES = frozenset({"email", "pan", "iban", "ssn", "phone", "national-id"})


def resolve_tag(tag: str) -> Control | None:
    """The catalogue control a finding's control string refers to, or None.

    Exact ids and v3.2.1 aliases first; then the longest catalogue id that is a prefix at
    a boundary (``GDPR:Art.32(1)(b)`` → ``GDPR:Art.32``; ``...:10.2.1.4.a`` → ``10.2.1.4``).
    """
    tag = tag.strip()
    hit = CONTROL_BY_ID.get(tag) or ALIAS_INDEX.get(tag)
    if hit is not None:
        return hit
    best: Control | None = None
    for cid, c in CONTROL_BY_ID.items():
        if (
            tag.startswith(cid)
            and tag[len(cid) : len(cid) + 1] in (".", "(")
            and (best is None or len(cid) > len(best.id))
        ):
            best = c
    return best


def category_outcome(
    control: Control, category: str, pii_type: str | None, severity: int = 0
) -> str | None:
    """What a finding of this category means for the control: "fail", "review" or None."""
    keys = (category, f"{category}:{pii_type}" if pii_type else category)
    if any(k in control.fail_on for k in keys):
        return "fail"
    if any(k in control.review_on for k in keys) or "*" in control.review_on:
        return "review"
    if control.review_min_severity and severity >= control.review_min_severity:
        return "review"
    return None


def framework_controls(key: str) -> tuple[Control, ...]:
    return tuple(c for c in CONTROLS if c.framework == key)


class Result(Enum):
    FAIL = "fail"
    REVIEW = "needs review"
    PASS = "pass"
    NA = "not assessable"


RESULT_ORDER: tuple[Result, ...] = (Result.FAIL, Result.REVIEW, Result.PASS, Result.NA)


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """What the report needs of a rule (read defensively from ``auditor.rules``)."""

    id: str
    title: str = ""
    category: str = ""
    severity: str = ""
    description: str = ""
    remediation: str = ""
    controls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Coverage:
    """The facts about the period's data that control results depend on."""

    requests: int = 0
    auth_failures: int = 0
    plain_http: int = 0
    gaps: int = 0  # gaps longer than the threshold, all sources
    read_gaps: int = 0  # log data lost before it was read (auditor.readgap), all sources
    silences: int = 0  # log-silence findings
    scheme_blind: tuple[str, ...] = ()  # "source (format)" that do not record the scheme
    store_days: float | None = None  # how far back the store holds data
    open_findings: int = 0
    acknowledged: int = 0
    urgent: int = 0  # high/critical findings (GDPR Art. 33 clock)
    urgent_overdue: int = 0
    exposure_types: tuple[tuple[str, int], ...] = ()  # distinct values per PII type
    gap_minutes: int = 60


@dataclass(frozen=True, slots=True)
class ControlResult:
    framework: str
    id: str
    ref: str
    aliases: tuple[str, ...]
    title: str
    summary: str
    test: str
    assess: str
    result: Result
    reason: str
    observed: str
    findings: int
    events: int
    prev_findings: int
    rules: tuple[str, ...]
    finding_ids: tuple[str, ...]


def _severity_rank(text: str) -> int:
    try:
        return int(Severity.parse(text))
    except KeyError:
        return 0


def _rule_maps(control: Control, rule: RuleInfo) -> bool:
    if any(resolve_tag(t) is control for t in rule.controls):
        return True
    if control.review_min_severity and _severity_rank(rule.severity) >= control.review_min_severity:
        return True
    cat = rule.category
    tokens = set(re.split(r"[._-]", rule.id))
    for k in (*control.fail_on, *control.review_on):
        kind, _, narrowed = k.partition(":")
        # "pii-in-url:pan": rules carry no PII type, so the rule id must name it.
        if kind == cat and (not narrowed or narrowed in tokens):
            return True
    return False


def rules_for(control: Control, rules: Sequence[RuleInfo]) -> tuple[str, ...]:
    if "*" in control.review_on:
        return ("(all rules)",) if rules else ()
    return tuple(sorted(r.id for r in rules if _rule_maps(control, r)))


def finding_outcomes(f: FindingRow) -> dict[str, str]:
    """Control id → "fail"/"review" for one finding, from its tags and its category."""
    return dict(_outcomes(f.controls, f.category, f.pii_type, f.severity))


@cache
def _outcomes(
    tags: tuple[str, ...], category: str, pii_type: str | None, severity: int
) -> tuple[tuple[str, str], ...]:
    """Cached: a month holds thousands of findings but few distinct (tags, category) pairs."""
    out: dict[str, str] = {}
    for tag in tags:
        c = resolve_tag(tag)
        if c is not None:
            out[c.id] = category_outcome(c, category, pii_type, severity) or c.tagged
    for c in CONTROLS:
        if c.id not in out:
            o = category_outcome(c, category, pii_type, severity)
            if o is not None:
                out[c.id] = o
    return tuple(out.items())


def unknown_tags(findings: Iterable[FindingRow]) -> dict[str, list[FindingRow]]:
    """Control strings on findings that the catalogue does not know, with their findings."""
    out: dict[str, list[FindingRow]] = {}
    for f in findings:
        for tag in f.controls:
            if resolve_tag(tag) is None:
                out.setdefault(tag.strip(), []).append(f)
    return out


def _observed(c: Control, cov: Coverage) -> str:
    cid = c.id
    if cid.endswith(":10.2.1.4"):
        return f"{cov.auth_failures:,} responses 401/403 logged"
    if cid.endswith(":4.2.1"):
        text = f"{cov.plain_http:,} plain-HTTP requests"
        if cov.scheme_blind:
            text += "; scheme not logged by " + ", ".join(cov.scheme_blind)
        return text
    if cid.endswith((":10.7.2", ":10.2.1.6")):
        read = f"; {cov.read_gaps} read gap(s)" if cov.read_gaps else ""
        return (
            f"{cov.gaps} gap(s) over {cov.gap_minutes} min{read}; {cov.silences} silence finding(s)"
        )
    if cid.endswith(":10.5.1"):
        if cov.store_days is None:
            return "store holds no data"
        return f"store holds {cov.store_days:.0f} day(s) of data"
    if cid.endswith(":10.4.3"):
        return f"{cov.open_findings} open, {cov.acknowledged} acknowledged"
    if cid == "GDPR:Art.33":
        return f"{cov.urgent} high/critical; {cov.urgent_overdue} past 72 h unacknowledged"
    if cid.endswith(":3.5.1"):
        pans = dict(cov.exposure_types).get("pan", 0)
        return f"{pans:,} distinct card numbers in URLs"
    if cid == "GDPR:Art.5(1)(c)":
        personal = [(t, n) for t, n in cov.exposure_types if t in PERSONAL_TYPES]
        return ("distinct values in URLs: " + distinct_text(personal)) if personal else ""
    return ""


def evaluate(
    c: Control, matched: Sequence[tuple[FindingRow, str]], tested: bool, cov: Coverage
) -> tuple[Result, str]:
    """The result of one control and the reason, in a few words."""
    n = len(matched)
    if c.assess is Assess.NONE:
        if n:
            return Result.REVIEW, f"{n} finding(s) tagged with it; the logs cannot show the rest"
        return Result.NA, "Not visible in access logs"
    fails = [f for f, o in matched if o == "fail"]
    if fails:
        return Result.FAIL, f"{len(fails)} finding(s) show it is not met"
    if n:
        return Result.REVIEW, f"{n} finding(s) to review"
    if "scheme" in c.needs and cov.scheme_blind:
        return Result.NA, "The log format does not record the scheme or TLS version"
    if c.assess is Assess.PARTIAL:
        return Result.REVIEW, "No findings; the logs show only part of it"
    if not tested:
        return Result.REVIEW, "No loaded rule tests it"
    if "data" in c.needs and cov.requests == 0:
        return Result.REVIEW, "No data in the period"
    if "data" in c.needs and cov.gaps:
        return Result.REVIEW, "No findings, but the data has gaps"
    if "data" in c.needs and cov.read_gaps:
        return Result.REVIEW, "No findings, but some log data was lost before it was read"
    return Result.PASS, "No findings; rules cover it; data complete"


def assess_controls(
    findings: Sequence[FindingRow],
    prev_findings: Sequence[FindingRow],
    rules: Sequence[RuleInfo],
    cov: Coverage,
) -> tuple[ControlResult, ...]:
    """One result per catalogue control, then one per unknown control found on findings."""
    matched: dict[str, list[tuple[FindingRow, str]]] = {}
    for f in findings:
        for cid, o in finding_outcomes(f).items():
            matched.setdefault(cid, []).append((f, o))
    prev: dict[str, int] = {}
    for f in prev_findings:
        for cid in finding_outcomes(f):
            prev[cid] = prev.get(cid, 0) + 1
    out: list[ControlResult] = []
    for c in CONTROLS:
        m = matched.get(c.id, [])
        mapped = rules_for(c, rules)
        tested = bool(mapped) or any(f.rule_id for f, _ in m)
        result, reason = evaluate(c, m, tested, cov)
        if not mapped and m:
            mapped = tuple(sorted({f.rule_id for f, _ in m}))
        out.append(
            ControlResult(
                framework=c.framework,
                id=c.id,
                ref=c.ref,
                aliases=c.aliases,
                title=c.title,
                summary=c.summary,
                test=c.test,
                assess=c.assess.value,
                result=result,
                reason=reason,
                observed=_observed(c, cov),
                findings=len(m),
                events=sum(f.count for f, _ in m),
                prev_findings=prev.get(c.id, 0),
                rules=mapped,
                finding_ids=tuple(f.id for f, _ in m),
            )
        )
    out.extend(_unknown_rows(findings, prev_findings))
    return tuple(out)


def _framework_of(tag: str) -> str:
    low = tag.lower()
    for fw in FRAMEWORKS:
        if low.startswith(fw.prefix.lower()):
            return fw.key
    if low.startswith("pci"):
        return "pci"
    if low.startswith("owasp"):
        return "owasp"
    if low.startswith("gdpr"):
        return "gdpr"
    return "other"


def _unknown_rows(
    findings: Sequence[FindingRow], prev_findings: Sequence[FindingRow]
) -> list[ControlResult]:
    prev = unknown_tags(prev_findings)
    rows = []
    for tag, fs in sorted(unknown_tags(findings).items()):
        ref = tag.split(":", 1)[1] if ":" in tag else tag
        rows.append(
            ControlResult(
                framework=_framework_of(tag),
                id=tag,
                ref=ref,
                aliases=(),
                title="(control not in the catalogue)",
                summary="A rule names this control; the catalogue has no row for it.",
                test="Findings of the rules that name it.",
                assess=Assess.PARTIAL.value,
                result=Result.REVIEW,
                reason=f"{len(fs)} finding(s) to review",
                observed="",
                findings=len(fs),
                events=sum(f.count for f in fs),
                prev_findings=len(prev.get(tag, [])),
                rules=tuple(sorted({f.rule_id for f in fs})),
                finding_ids=tuple(f.id for f in fs),
            )
        )
    return rows


def tally(results: Iterable[ControlResult], framework: str) -> dict[Result, int]:
    counts = dict.fromkeys(RESULT_ORDER, 0)
    for r in results:
        if r.framework == framework:
            counts[r.result] += 1
    return counts


def count_failures(results: Iterable[ControlResult]) -> int:
    return sum(1 for r in results if r.result is Result.FAIL)


def distinct_text(per_type: Mapping[str, int] | Sequence[tuple[str, int]]) -> str:
    items = per_type.items() if isinstance(per_type, Mapping) else per_type
    return ", ".join(f"{t}: {n}" for t, n in items)
