"""Small readings of stored HTTP fields shared by the OCSF and ECS shapes."""

from __future__ import annotations

import ipaddress


def http_version(text: object) -> str | None:
    """``HTTP/1.1`` → ``1.1`` (OCSF's http_request.version is the bare number)."""
    if not isinstance(text, str) or not text:
        return None
    return text.split("/", 1)[1] if text.upper().startswith("HTTP/") else text


def url_string(
    scheme: object, host: object, port: object, path: object, query: object
) -> str | None:
    if not isinstance(path, str):
        return None
    q = f"?{query}" if isinstance(query, str) and query else ""
    if isinstance(scheme, str) and scheme and isinstance(host, str) and host:
        default = {"http": 80, "https": 443}.get(scheme)
        p = f":{port}" if isinstance(port, int) and port != default else ""
        return f"{scheme}://{host}{p}{path}{q}"
    return f"{path}{q}"


def tls_version(text: object) -> tuple[str, str] | None:
    """``TLSv1.3`` → ``("tls", "1.3")``; ``SSLv3`` → ``("ssl", "3")``; else ``None``."""
    if not isinstance(text, str):
        return None
    t = text.strip()
    for proto in ("TLS", "SSL"):
        if t.upper().startswith(proto):
            number = t[len(proto) :].lstrip("vV ")
            if number:
                return proto.lower(), number
    return None


def forwarded_ips(text: object) -> list[str] | None:
    """The IP addresses of an ``X-Forwarded-For`` value (``unknown`` and junk left out)."""
    if not isinstance(text, str):
        return None
    ips = []
    for part in text.split(","):
        try:
            ips.append(str(ipaddress.ip_address(part.strip())))
        except ValueError:
            continue
    return ips or None
