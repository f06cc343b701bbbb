"""OCSF 1.3.0 shapes: a finding as a Detection Finding (2004), an event as HTTP Activity (4002).

Only attributes the schema defines for the class are set at the top level; what OCSF has no
place for in a Detection Finding (the control mappings as our ids, the source name) goes in
``unmapped``, which the schema keeps for exactly that. Inputs are already redacted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from auditor.export.controls import compliance
from auditor.export.http import forwarded_ips, http_version, tls_version, url_string
from auditor.export.native import controls_of, severity_of, time_ms
from auditor.export.product import product
from auditor.export.ruleinfo import rule_info
from auditor.model import Severity

OCSF_VERSION = "1.3.0"

FINDINGS_CATEGORY_UID = 2
DETECTION_FINDING_UID = 2004
NETWORK_CATEGORY_UID = 4
HTTP_ACTIVITY_UID = 4002

ACTIVITY_CREATE = 1
ANALYTIC_RULE = 1

# Our four severities → OCSF severity_id (0 Unknown, 1 Informational, ..., 6 Fatal).
SEVERITY_IDS = {Severity.LOW: 2, Severity.MEDIUM: 3, Severity.HIGH: 4, Severity.CRITICAL: 5}
SEVERITY_NAMES = {0: "Unknown", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}

# Finding status (store) → OCSF status_id (1 New, 2 In Progress, 3 Suppressed, 4 Resolved).
STATUS_IDS = {"open": 1, "acknowledged": 2, "suppressed": 3, "resolved": 4, "closed": 4}
STATUS_NAMES = {1: "New", 2: "In Progress", 3: "Suppressed", 4: "Resolved"}

# HTTP Activity activity_id by request method; 99 Other for anything else, 0 when unknown.
HTTP_ACTIVITY_IDS = {
    "CONNECT": 1,
    "DELETE": 2,
    "GET": 3,
    "HEAD": 4,
    "OPTIONS": 5,
    "POST": 6,
    "PUT": 7,
    "TRACE": 8,
    "PATCH": 9,
}


def _prune(d: dict[str, Any]) -> dict[str, Any]:
    """Drop keys whose value is None or empty, so consumers never see ``null`` attributes."""
    return {k: v for k, v in d.items() if v is not None and v != {} and v != []}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _metadata(uid: str | None) -> dict[str, Any]:
    return _prune({"version": OCSF_VERSION, "product": product(), "uid": uid})


def _endpoint(ip: object, port: object = None, hostname: object = None) -> dict[str, Any] | None:
    ep = _prune(
        {
            "ip": ip if isinstance(ip, str) and ip else None,
            "port": port if isinstance(port, int) and not isinstance(port, bool) else None,
            "hostname": hostname if isinstance(hostname, str) and hostname else None,
        }
    )
    return ep or None


def finding_to_ocsf(f: Mapping[str, Any], rule: object = None) -> dict[str, Any]:
    """A finding (store row or CONTRACT JSON) as an OCSF Detection Finding."""
    info = rule_info(rule)
    sev = severity_of(f.get("severity"))
    severity_id = SEVERITY_IDS.get(sev, 0) if sev is not None else 0
    first_ms = time_ms(f, "first_seen")
    last_ms = time_ms(f, "last_seen")
    fid = None if f.get("id") is None else str(f["id"])
    status = _str(f.get("status")) or "open"
    status_id = STATUS_IDS.get(status, 99)
    controls = controls_of(f) or list(info.controls)
    category = f.get("category") or info.category
    rule_id = f.get("rule_id") or info.id
    title = info.title or f.get("title") or rule_id
    count = f.get("count")

    evidence = _prune(
        {
            "src_endpoint": _endpoint(f.get("client_ip")),
            "data": _prune(
                {
                    "evidence": f.get("evidence"),
                    "pii_type": f.get("pii_type"),
                    "distinct_values": f.get("distinct_values"),
                }
            ),
        }
    )
    out: dict[str, Any] = {
        "class_uid": DETECTION_FINDING_UID,
        "class_name": "Detection Finding",
        "category_uid": FINDINGS_CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": ACTIVITY_CREATE,
        "activity_name": "Create",
        "type_uid": DETECTION_FINDING_UID * 100 + ACTIVITY_CREATE,
        "type_name": "Detection Finding: Create",
        "severity_id": severity_id,
        "severity": SEVERITY_NAMES.get(severity_id, "Unknown"),
        "time": last_ms if last_ms is not None else first_ms,
        "start_time": first_ms,
        "end_time": last_ms,
        "count": count if isinstance(count, int) and not isinstance(count, bool) else None,
        "status_id": status_id,
        "status": STATUS_NAMES.get(status_id, status),
        "message": title,
        "finding_info": _prune(
            {
                "uid": fid or "",
                "title": title,
                "desc": info.description,
                "types": [category] if category else None,
                "analytic": _prune(
                    {
                        "uid": rule_id,
                        "name": rule_id,
                        "type_id": ANALYTIC_RULE,
                        "type": "Rule",
                        "category": category,
                        "desc": info.title,
                    }
                ),
                "first_seen_time": first_ms,
                "last_seen_time": last_ms,
            }
        ),
        "metadata": _metadata(fid),
        "evidences": [evidence] if evidence else None,
        "remediation": {"desc": info.remediation} if info.remediation else None,
        "unmapped": _prune(
            {
                "controls": controls,
                "compliance": compliance(controls),
                "pii_type": f.get("pii_type"),
                "source": f.get("source"),
                "references": list(info.references) or None,
            }
        ),
    }
    return _prune(out)


def event_to_ocsf(e: Mapping[str, Any]) -> dict[str, Any]:
    """A stored event (already redacted) as an OCSF HTTP Activity."""
    method = _str(e.get("method"))
    if method is None:
        activity_id, activity_name = 0, "Unknown"
    elif method.upper() in HTTP_ACTIVITY_IDS:
        activity_id, activity_name = HTTP_ACTIVITY_IDS[method.upper()], method.capitalize()
    else:
        activity_id, activity_name = 99, "Other"
    ts = time_ms(e, "ts")
    if ts is None:
        ts = time_ms(e, "timestamp")
    scheme = e.get("scheme")
    host = e.get("host")
    server_port = e.get("server_port")
    path = e.get("path")
    query = e.get("query")
    url = _prune(
        {
            "scheme": scheme,
            "hostname": host,
            "port": server_port,
            "path": path,
            "query_string": query or None,
            # url_t is an absolute URL: only when the log names the scheme and host.
            "url_string": url_string(scheme, host, server_port, path, query)
            if scheme and host
            else None,
        }
    )
    request = _prune(
        {
            "http_method": method,
            "url": url,
            "user_agent": e.get("user_agent"),
            "referrer": e.get("referrer"),
            "version": http_version(e.get("http_version")),
            "uid": e.get("request_id"),
            "x_forwarded_for": forwarded_ips(e.get("forwarded_for")),
            "length": e.get("bytes_in"),
        }
    )
    status = e.get("status")
    response = _prune({"code": status, "length": e.get("bytes_out")})
    severity_id = 1  # Informational: an access log line is not itself a detection
    out: dict[str, Any] = {
        "class_uid": HTTP_ACTIVITY_UID,
        "class_name": "HTTP Activity",
        "category_uid": NETWORK_CATEGORY_UID,
        "category_name": "Network Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": HTTP_ACTIVITY_UID * 100 + activity_id,
        "severity_id": severity_id,
        "severity": "Informational",
        "time": ts,
        "duration": e.get("duration_ms"),
        "http_request": request,
        "http_response": response if "code" in response else None,
        "src_endpoint": _endpoint(e.get("client_ip"), e.get("client_port")),
        "dst_endpoint": _endpoint(None, server_port, host),
        "tls": _tls(e.get("tls_version")),
        "traffic": _prune({"bytes_in": e.get("bytes_in"), "bytes_out": e.get("bytes_out")}),
        "metadata": _metadata(None if e.get("id") is None else str(e["id"])),
        "unmapped": _prune(
            {
                "source": e.get("source"),
                "format": e.get("format"),
                "route": e.get("route"),
                "user_name": e.get("user_name"),
                "file": e.get("file"),
                "offset": e.get("offset"),
                "exposures": e.get("exposures") or None,
            }
        ),
    }
    return _prune(out)


def _tls(text: object) -> dict[str, Any] | None:
    parsed = tls_version(text)
    if parsed is not None:
        return {"version": parsed[1]}
    return {"version": text} if isinstance(text, str) and text else None
