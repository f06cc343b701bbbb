"""ECS 8.x shapes: a finding as an alert (``event.kind: alert``), an event as a web access.

Fields ECS has no name for (masked evidence, pii_type, the finding's own id and status) go
under the custom ``log_auditor`` object, as ECS asks of custom fields. Inputs are redacted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import auditor
from auditor.export.controls import by_framework
from auditor.export.http import http_version, tls_version, url_string
from auditor.export.native import controls_of, iso_ms, severity_of, time_ms
from auditor.export.product import PRODUCT_NAME
from auditor.export.ruleinfo import rule_info
from auditor.model import Severity

ECS_VERSION = "8.11.0"

# event.severity / event.risk_score: the values Elastic's detection rules use per severity.
SEVERITY_SCORES = {Severity.LOW: 21, Severity.MEDIUM: 47, Severity.HIGH: 73, Severity.CRITICAL: 99}


def _prune(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None and v != {} and v != []}


def _observer() -> dict[str, Any]:
    return {"vendor": PRODUCT_NAME, "product": PRODUCT_NAME, "version": auditor.__version__}


def _agent() -> dict[str, Any]:
    return {"name": PRODUCT_NAME, "type": PRODUCT_NAME, "version": auditor.__version__}


def _label_key(framework: str) -> str:
    """``PCI-DSS-4.0.1`` → ``pci_dss_4_0_1``: ECS label keys hold no dots."""
    return "".join(c if c.isalnum() else "_" for c in framework.lower()).strip("_") or "other"


def finding_to_ecs(f: Mapping[str, Any], rule: object = None) -> dict[str, Any]:
    """A finding (store row or CONTRACT JSON) as an ECS alert document."""
    info = rule_info(rule)
    sev = severity_of(f.get("severity"))
    score = SEVERITY_SCORES.get(sev) if sev is not None else None
    first_ms = time_ms(f, "first_seen")
    last_ms = time_ms(f, "last_seen")
    controls = controls_of(f) or list(info.controls)
    category = f.get("category") or info.category
    rule_id = f.get("rule_id") or info.id
    title = info.title or f.get("title") or rule_id
    evidence = f.get("evidence")
    web = category in ("pii-in-url", "secret-in-url", "unencrypted-transport")
    message = f"{title}: {evidence}" if evidence else title
    client_ip = f.get("client_ip")
    return _prune(
        {
            "@timestamp": iso_ms(last_ms if last_ms is not None else first_ms),
            "message": message,
            "ecs": {"version": ECS_VERSION},
            "event": _prune(
                {
                    "kind": "alert",
                    "category": ["intrusion_detection", "web"] if web else ["intrusion_detection"],
                    "type": ["info"],
                    "id": None if f.get("id") is None else str(f["id"]),
                    "severity": score,
                    "risk_score": score,
                    "start": iso_ms(first_ms),
                    "end": iso_ms(last_ms),
                    "dataset": "log_auditor.finding",
                    "module": "log_auditor",
                    "provider": PRODUCT_NAME,
                }
            ),
            "rule": _prune(
                {
                    "id": rule_id,
                    "name": title,
                    "description": info.description,
                    "category": category,
                    "reference": info.references[0] if info.references else None,
                    "ruleset": PRODUCT_NAME,
                }
            ),
            "source": {"ip": client_ip} if client_ip else None,
            "related": {"ip": [client_ip]} if client_ip else None,
            "tags": [PRODUCT_NAME, *controls],
            "labels": {
                _label_key(fw): ",".join(reqs) for fw, reqs in by_framework(controls).items()
            },
            "observer": _observer(),
            "agent": _agent(),
            "log_auditor": _prune(
                {
                    "finding_id": None if f.get("id") is None else str(f["id"]),
                    "severity": str(sev) if sev is not None else None,
                    "count": f.get("count"),
                    "status": f.get("status"),
                    "pii_type": f.get("pii_type"),
                    "evidence": evidence,
                    "distinct_values": f.get("distinct_values"),
                    "controls": controls,
                    "source": f.get("source"),
                    "remediation": info.remediation,
                }
            ),
        }
    )


def event_to_ecs(e: Mapping[str, Any]) -> dict[str, Any]:
    """A stored event (already redacted) as an ECS web access document."""
    ts = time_ms(e, "ts")
    if ts is None:
        ts = time_ms(e, "timestamp")
    status = e.get("status")
    scheme, host, port = e.get("scheme"), e.get("host"), e.get("server_port")
    path, query = e.get("path"), e.get("query")
    tls = tls_version(e.get("tls_version"))
    duration = e.get("duration_ms")
    client_ip = e.get("client_ip")
    outcome = None
    if isinstance(status, int) and not isinstance(status, bool):
        outcome = "failure" if status >= 400 else "success"
    return _prune(
        {
            "@timestamp": iso_ms(ts),
            "ecs": {"version": ECS_VERSION},
            "event": _prune(
                {
                    "kind": "event",
                    "category": ["web"],
                    "type": ["access"],
                    "outcome": outcome,
                    "id": None if e.get("id") is None else str(e["id"]),
                    "duration": round(duration * 1_000_000)
                    if isinstance(duration, int | float) and not isinstance(duration, bool)
                    else None,
                    "dataset": "log_auditor.access",
                    "module": "log_auditor",
                }
            ),
            "http": _prune(
                {
                    "version": http_version(e.get("http_version")),
                    "request": _prune(
                        {
                            "method": e.get("method"),
                            "referrer": e.get("referrer"),
                            "id": e.get("request_id"),
                            "bytes": e.get("bytes_in"),
                        }
                    ),
                    "response": _prune({"status_code": status, "bytes": e.get("bytes_out")}),
                }
            ),
            "url": _prune(
                {
                    "scheme": scheme,
                    "domain": host,
                    "port": port,
                    "path": path,
                    "query": query or None,
                    "original": url_string(None, None, None, path, query),
                    "full": url_string(scheme, host, port, path, query)
                    if scheme and host
                    else None,
                }
            ),
            "source": _prune({"ip": client_ip, "address": client_ip, "port": e.get("client_port")}),
            "destination": _prune({"domain": host, "port": port}),
            "user_agent": {"original": e["user_agent"]} if e.get("user_agent") else None,
            "user": {"name": e["user_name"]} if e.get("user_name") else None,
            "tls": {"version_protocol": tls[0], "version": tls[1]} if tls else None,
            "related": {"ip": [client_ip]} if client_ip else None,
            "log": _prune(
                {
                    "file": {"path": e["file"]} if e.get("file") else None,
                    "offset": e.get("offset"),
                }
            ),
            "observer": _observer(),
            "agent": _agent(),
            "log_auditor": _prune(
                {
                    "source": e.get("source"),
                    "format": e.get("format"),
                    "route": e.get("route"),
                    "forwarded_for": e.get("forwarded_for"),
                    "exposures": e.get("exposures") or None,
                }
            ),
        }
    )
