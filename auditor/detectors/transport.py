"""Unencrypted transport: requests served over plain HTTP, credentials or PII sent in
cleartext, and TLS below 1.2 (PCI DSS 4.2.1, GDPR 32, OWASP API8).

Plain HTTP is known from the scheme the format logs (or the listener scheme configured for
the source), from port 80, or from an absolute ``http://`` request target. A plain request
answered by a redirect (301/302/307/308) is the correct set-up and not a finding; but a
credential or PII sent in that request crossed the network in cleartext all the same, so
those rules ignore the redirect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from auditor.detectors.base import Env, StatefulDetector, make_hit
from auditor.detectors.fields import EventView
from auditor.model import Event, Hit
from auditor.rules import Rule


def plain_reason(ev: Event) -> str | None:
    """Why the request is known to be plain HTTP, or ``None`` (TLS or unknown)."""
    scheme = ev.scheme
    if scheme is not None:
        return "scheme http" if scheme == "http" else None
    if ev.tls_version is not None:
        return None
    if ev.server_port == 80:
        return "port 80"
    path = ev.path
    if path[:1] != "/" and path[:7].lower() == "http://":
        return "absolute http:// request"
    return None


def is_plain_http(ev: Event) -> bool:
    scheme = ev.scheme
    if scheme is not None:
        return scheme == "http"
    return plain_reason(ev) is not None


def _is_http(scheme: object) -> bool:
    return scheme == "http"


def _is_port_80(port: object) -> bool:
    return port == 80


_TLS_CACHE: dict[str, float] = {}


def tls_number(version: str) -> float:
    """``"1.2"`` → 1.2; ``"SSLv3"`` → 0.3 (older than any TLS); unknown text → 9.9."""
    got = _TLS_CACHE.get(version)
    if got is None:
        v = version.strip().lower()
        if v.startswith("sslv"):
            got = 0.1 * float(v[4:]) if v[4:].isdigit() else 0.0
        else:
            v = v.removeprefix("tlsv").removeprefix("tls")
            try:
                got = float(v)
            except ValueError:
                got = 9.9
        _TLS_CACHE[version] = got
    return got


class TransportDetector(StatefulDetector):
    """Serves every ``detector = "transport"`` rule; stateless."""

    name = "transport"
    wants = "transport"  # called when the event says anything about scheme, port or TLS

    def __init__(self, rules: list[Rule]) -> None:
        super().__init__(rules)
        self.checks = [(r, r.params["check"]) for r in rules]
        self.need_tls = any(c == "weak-tls" for _, c in self.checks)

    def suspect_tests(self) -> list[tuple[str, Callable[[Any], object]]]:
        """Plain HTTP is known from scheme "http" or, without a scheme, from port 80 (a
        superset: the scheme or TLS may say otherwise) or an absolute target (marked
        anyway); weak TLS from a version below the highest ``min_tls``. An event that
        passes none of these can fire no check: most HTTPS traffic, which formats that
        log the scheme (JSON gateways) would otherwise all send through ``observe``."""
        tests: list[tuple[str, Callable[[Any], object]]] = [
            ("scheme", _is_http),
            ("server_port", _is_port_80),
        ]
        if self.need_tls:
            floor = max(r.params["min_tls"] for r, c in self.checks if c == "weak-tls")
            tests.append(("tls_version", lambda v: v is not None and tls_number(v) < floor))
        return tests

    def _verdict(
        self, rule: Rule, check: str, ev: Event, reason: str | None
    ) -> tuple[str, str] | None:
        """(key, evidence) when ``rule`` fires on ``ev``."""
        host = ev.host or ev.source
        if check == "weak-tls":
            v = ev.tls_version
            if v is not None and tls_number(v) < rule.params["min_tls"]:
                return (f"{host}|TLS {v}", f"[TLS {v}]")
            return None
        if reason is None:
            return None
        if check == "plain-http":
            if ev.status in rule.params["redirect_statuses"]:
                return None
            return (host, f"[plain HTTP: {reason}]")
        types = (
            rule.params["credential_types"] if check == "credentials" else rule.params["pii_types"]
        )
        sent = sorted({x.pii_type for x in ev.exposures if x.pii_type in types})
        if check == "credentials" and ev.user_name not in (None, "", "-"):
            sent.insert(0, "user credentials")
        if not sent:
            return None
        return (f"{host}|{ev.route}", f"[{', '.join(sent)} over plain HTTP: {reason}]")

    def observe(self, ev: Event, t: float, env: Env) -> list[Hit] | None:
        scheme = ev.scheme
        if scheme == "https" and (ev.tls_version is None or not self.need_tls):
            return None
        if (
            scheme is None
            and ev.server_port is None
            and ev.tls_version is None
            and ev.path[:1] == "/"
        ):
            return None
        reason = plain_reason(ev)
        if reason is None and (ev.tls_version is None or not self.need_tls):
            return None
        hits: list[Hit] = []
        for rule, check in self.checks:
            got = self._verdict(rule, check, ev, reason)
            if got is not None and not self.allowed(rule, env):
                hits.append(make_hit(rule, ev, got[0], extra=got[1]))
        return hits

    def explain(self, rule: Rule, view: EventView, env: Env) -> tuple[str, str]:
        ev = view.ev
        got = self._verdict(rule, rule.params["check"], ev, plain_reason(ev))
        if got is None:
            if rule.params["check"] == "weak-tls":
                return ("no", f"TLS version {ev.tls_version or 'not logged'}")
            reason = plain_reason(ev)
            if reason is None:
                known = ev.scheme or ("tls " + ev.tls_version if ev.tls_version else "not logged")
                return ("no", f"not known to be plain HTTP (scheme {known})")
            if rule.params["check"] == "plain-http":
                return ("no", f"plain HTTP ({reason}) answered by redirect {ev.status}")
            return ("no", f"plain HTTP ({reason}) but no credentials/PII in the request")
        if self.allowed(rule, env):
            return ("no", f"{got[1]} but allow-listed")
        return ("fires", got[1])


def build(rules: list[Rule]) -> list[StatefulDetector]:
    return [TransportDetector(rules)]
