"""PII and secrets found in URLs: one hit per leaked value, from the exposures the redactor
recorded at ingest (``Event.exposures``; the raw value never got this far).

The finding key is the route and the parameter that leaked (``/users/{id}|query:email``),
so a report says *where* the API leaks; ``Hit.digest`` (a keyed hash) lets the store count
distinct leaked values. Severity can depend on the type (an AWS key is worse than a
Google Maps key), on the detail (``test-key``: low, ``alg:none``), and rises when the value
also crossed the network in cleartext.
"""

from __future__ import annotations

from auditor.detectors.base import Env, StatefulDetector, make_hit
from auditor.detectors.fields import EventView
from auditor.detectors.transport import is_plain_http
from auditor.model import Event, Exposure, Hit, Severity
from auditor.rules import Rule


class PiiDetector(StatefulDetector):
    """Serves every ``detector = "pii"`` rule; stateless."""

    name = "pii"
    wants = "exposures"

    def __init__(self, rules: list[Rule]) -> None:
        super().__init__(rules)
        self.by_type: dict[str, list[Rule]] = {}
        for rule in rules:
            for pii_type in sorted(rule.params["types"]):
                self.by_type.setdefault(pii_type, []).append(rule)

    def _applies(self, rule: Rule, x: Exposure) -> bool:
        p = rule.params
        if p["details"] and x.detail not in p["details"]:
            return False
        if x.detail is not None and x.detail in p["exclude_details"]:
            return False
        return x.location in p["locations"]

    @staticmethod
    def _severity(rule: Rule, x: Exposure, plain: bool) -> Severity:
        p = rule.params
        sev = p["severity_by_type"].get(x.pii_type, rule.severity)
        if x.detail is not None and x.detail in p["severity_by_detail"]:
            sev = p["severity_by_detail"][x.detail]
        if plain and p["plain_http_severity"]:
            sev = max(sev, Severity.parse(p["plain_http_severity"]))
        return Severity(sev)

    def observe(self, ev: Event, t: float, env: Env) -> list[Hit] | None:
        exposures = ev.exposures
        if not exposures:
            return None
        hits: list[Hit] = []
        plain = is_plain_http(ev)
        for x in exposures:
            for rule in self.by_type.get(x.pii_type, ()):
                if not self._applies(rule, x) or self.allowed(rule, env):
                    continue
                where = f"{x.location}:{x.param}" if x.param else x.location
                detail = f" ({x.detail})" if x.detail else ""
                hits.append(
                    make_hit(
                        rule,
                        ev,
                        f"{ev.route}|{where}",
                        severity=self._severity(rule, x, plain),
                        extra=f"[{x.pii_type} in {where}: {x.masked}{detail}]",
                        pii_type=x.pii_type,
                        digest=x.digest,
                    )
                )
        return hits

    def explain(self, rule: Rule, view: EventView, env: Env) -> tuple[str, str]:
        types = sorted(rule.params["types"])
        found = [
            x
            for x in view.ev.exposures
            if x.pii_type in rule.params["types"] and self._applies(rule, x)
        ]
        if not found:
            return ("no", f"no exposure of type {', '.join(types)}")
        if self.allowed(rule, env):
            return ("no", "exposure found but allow-listed")
        what = ", ".join(
            f"{x.pii_type} in {x.location}{':' + x.param if x.param else ''} ({x.masked})"
            for x in found
        )
        return ("fires", what)


def build(rules: list[Rule]) -> list[StatefulDetector]:
    return [PiiDetector(rules)]
