"""Plain words for the report: per category risks and actions, per format limitations.

The ruleset's own ``remediation`` wins when it is loaded; these are the fall-backs, and the
sentences the executive summary builds its "top risks" from.
"""

from __future__ import annotations

from dataclasses import dataclass

CATEGORY_LABEL: dict[str, str] = {
    "pii-in-url": "Personal data in URLs",
    "secret-in-url": "Secrets in URLs",
    "unencrypted-transport": "Unencrypted transport",
    "failed-auth-burst": "Failed-authentication bursts",
    "credential-stuffing": "Credential stuffing",
    "volume-anomaly": "Volume anomalies",
    "scanner-probe": "Scanner probes",
    "injection-probe": "Injection probes",
    "enumeration": "Object-id enumeration",
    "admin-access": "Administrative access",
    "error-spike": "Server-error spikes",
    "log-silence": "Log silences",
}

# One sentence per category; {n} findings, {events} requests, {clients} distinct clients,
# {values} distinct leaked values, {types} the PII types.
CATEGORY_RISK: dict[str, str] = {
    "pii-in-url": "Personal data ({types}) is sent in request URLs: {values} distinct values in "
    "{events} requests. URLs are copied into every access log, proxy log and Referer header.",
    "secret-in-url": "Credentials or tokens ({types}) are sent in request URLs: {values} "
    "distinct values in {events} requests. Anyone who reads the logs can reuse them.",
    "unencrypted-transport": "{events} requests were served over plain HTTP, so data and "
    "credentials crossed the network unencrypted.",
    "failed-auth-burst": "{clients} client(s) produced bursts of failed logins ({events} "
    "failures): password guessing, or a broken client.",
    "credential-stuffing": "{clients} client(s) tried many different accounts ({events} "
    "attempts): a credential-stuffing pattern.",
    "volume-anomaly": "{n} unusual request-volume episode(s) ({events} requests): abuse, a "
    "runaway client, or a denial-of-service attempt.",
    "scanner-probe": "{clients} client(s) probed for known vulnerable paths ({events} requests).",
    "injection-probe": "{clients} client(s) sent injection or traversal payloads ({events} "
    "requests); check whether any was answered with success.",
    "enumeration": "{clients} client(s) walked through object ids ({events} requests): a "
    "possible broken object-level authorisation (BOLA) attempt.",
    "admin-access": "Administrative routes were used {events} times by {clients} client(s).",
    "error-spike": "{n} server-error spike(s) ({events} 5xx responses): availability and "
    "possibly verbose errors.",
    "log-silence": "{n} log source silence(s): logging may have stopped, so events may be "
    "missing from this report.",
}

CATEGORY_ACTION: dict[str, str] = {
    "pii-in-url": "Move the value out of the URL (POST body or header), purge it from logs "
    "and referrers, and mask it at the proxy until the client is fixed.",
    "secret-in-url": "Revoke and rotate the exposed credential, send credentials in headers "
    "only, and purge the logs that hold them.",
    "unencrypted-transport": "Redirect HTTP to HTTPS (301/308) or close the plain port, and "
    "send HSTS.",
    "failed-auth-burst": "Check whether the accounts were compromised; enforce lock-out or "
    "rate limits (429) after at most 10 failures.",
    "credential-stuffing": "Block or challenge the clients, check the targeted accounts for "
    "successful logins, and enforce MFA or rate limits.",
    "volume-anomaly": "Identify the client, confirm whether the load was legitimate, and set "
    "per-client rate limits.",
    "scanner-probe": "Confirm the scanner is not authorised; block it at the edge and verify "
    "that no probed path exists.",
    "injection-probe": "Review the responses to the payloads; ensure the WAF blocks them and "
    "the handlers validate input.",
    "enumeration": "Verify object-level authorisation on the route; rate-limit id lookups.",
    "admin-access": "Confirm each administrative request was authorised and from an expected "
    "network.",
    "error-spike": "Find the failing dependency or deployment; make sure errors do not "
    "reveal internals.",
    "log-silence": "Find why the source stopped logging and whether events were lost.",
}

DEFAULT_ACTION = "Review the evidence and decide whether the behaviour is authorised."


@dataclass(frozen=True, slots=True)
class FormatInfo:
    """What a log format records, for the methodology and for "needs scheme" controls."""

    scheme: bool  # scheme or TLS version is in each line
    user: bool  # an authenticated user can appear
    cannot_show: str


_NO_SCHEME_CLF = FormatInfo(
    False,
    True,
    "No scheme or TLS version (plain HTTP cannot be told from HTTPS unless the source sets "
    "a scheme), no duration; host only in vhost variants; user only with HTTP Basic auth; "
    "no bodies or response headers (HSTS not visible).",
)
_TLS_JSON = FormatInfo(
    True, True, "Request and response bodies and response headers (e.g. HSTS) are not logged."
)

# First match wins: "traefik-clf" is a CLF line, "traefik-json" carries the scheme.
_FORMATS: tuple[tuple[tuple[str, ...], FormatInfo], ...] = (
    (
        ("nginx-error",),
        FormatInfo(
            False, False, "An error log: no status code, client or timing for most requests."
        ),
    ),
    (("clf", "combined", "common", "vhost", "kong", "nginx", "apache"), _NO_SCHEME_CLF),
    (
        ("haproxy",),
        FormatInfo(
            False,
            False,
            "No scheme or TLS version in the default HTTP log format; no user; no bodies "
            "or response headers.",
        ),
    ),
    (
        ("alb", "elb"),
        FormatInfo(True, False, "No authenticated user; request bodies are not logged."),
    ),
    (("traefik", "caddy", "cloudflare"), _TLS_JSON),
    (
        ("envoy",),
        FormatInfo(
            False,
            False,
            "Scheme and TLS version only where %REQ(X-FORWARDED-PROTO)% or "
            "%DOWNSTREAM_TLS_VERSION% is in the format; no user; no bodies or response headers.",
        ),
    ),
    (
        ("json",),
        FormatInfo(
            False,
            True,
            "Depends on the fields mapped; scheme and TLS only if mapped. No bodies or "
            "response headers.",
        ),
    ),
)

UNKNOWN_FORMAT = FormatInfo(
    False, False, "Format not documented here; the scheme, TLS and user are treated as unknown."
)


def format_info(name: str | None) -> FormatInfo:
    """The capabilities of a format by its name (best match on known name parts)."""
    if not name:
        return UNKNOWN_FORMAT
    low = name.lower()
    for keys, info in _FORMATS:
        if any(k in low for k in keys):
            return info
    return UNKNOWN_FORMAT


GLOSSARY: tuple[tuple[str, str], ...] = (
    (
        "Finding",
        (
            "One episode of one rule for one key (client, route or source): the events "
            "it covers, first and last seen."
        ),
    ),
    ("Pass", "Access logs fully cover the check, a rule tests it, no finding and no data gap."),
    ("Fail", "At least one finding shows the requirement is not met."),
    (
        "Needs review",
        "The logs show something, or only part of the requirement: a person must judge.",
    ),
    ("Not assessable", "Access logs cannot show this requirement; other evidence is needed."),
    (
        "Distinct values",
        "Count of different leaked values, by keyed hash; the values themselves are never stored.",
    ),
    ("Gap", "A stretch with no line from a source longer than the gap threshold."),
    (
        "Pseudonym",
        (
            "A keyed hash (HMAC-SHA256) of a client address; the key stays with the "
            "store, not in the report."
        ),
    ),
)
