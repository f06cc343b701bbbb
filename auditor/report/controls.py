"""The versioned control catalogue: one row per control the report assesses.

Mapping lives here, per control, not on the rules (peers P-14, P-15): a control names the
finding categories that are evidence against it and says how far access logs can show it
at all. Requirement texts are paraphrased in our own words. The catalogue carries its own
version and a hash of its content, both printed in every report, so a reader knows which
mapping produced a result.

Assessability:

- ``FULL``: access logs cover the check, so "pass" is possible when a rule tests it, no
  finding is open and the data is complete.
- ``PARTIAL``: logs show something, a human must judge: never better than "needs review".
- ``NONE``: logs cannot show it: "not assessable from logs", whatever else happens.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum

CATALOGUE_VERSION = "2026.11-2"


class Assess(Enum):
    FULL = "full"
    PARTIAL = "partial"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Framework:
    key: str  # "pci" | "owasp" | "gdpr"
    name: str  # the exact name and version printed in the report
    prefix: str  # control id prefix on findings, e.g. "PCI-DSS-4.0.1"


@dataclass(frozen=True, slots=True)
class Control:
    """One requirement, as far as an access-log auditor can speak to it.

    ``fail_on`` and ``review_on`` hold finding categories, optionally narrowed to a PII type
    (``"pii-in-url:pan"``). A finding tagged with the control id (or an alias) but not in
    either list counts as ``tagged`` says.
    """

    framework: str
    ref: str  # "10.2.1.4", "API2", "Art.5(1)(c)"
    title: str
    summary: str  # what the requirement asks, in brief
    test: str  # how log-auditor tests it from access logs
    assess: Assess
    fail_on: tuple[str, ...] = ()
    review_on: tuple[str, ...] = ()
    tagged: str = "review"  # "fail" | "review"
    needs: tuple[str, ...] = ("data",)  # "data" (complete coverage), "scheme"
    review_min_severity: int = 0  # findings this severe (1-4) or worse need review; 0: off
    aliases: tuple[str, ...] = ()  # e.g. ("PCI-DSS-3.2.1:10.2.4",)

    @property
    def id(self) -> str:
        return f"{FRAMEWORK_BY_KEY[self.framework].prefix}:{self.ref}"


FRAMEWORKS: tuple[Framework, ...] = (
    Framework("pci", "PCI DSS v4.0.1", "PCI-DSS-4.0.1"),
    Framework("owasp", "OWASP API Security Top 10 2023", "OWASP-API-2023"),
    Framework("gdpr", "GDPR (EU) 2016/679", "GDPR"),
)
FRAMEWORK_BY_KEY = {f.key: f for f in FRAMEWORKS}
PCI_V3 = "PCI-DSS-3.2.1"

_ATTACKS = ("injection-probe", "scanner-probe")
_AUTH = ("failed-auth-burst", "credential-stuffing")
F, P, N = Assess.FULL, Assess.PARTIAL, Assess.NONE


def _pci(
    ref: str, v3: str, title: str, summary: str, test: str, assess: Assess, **kw: object
) -> Control:
    aliases = tuple(f"{PCI_V3}:{a.strip()}" for a in v3.split(",") if a.strip())
    return Control("pci", ref, title, summary, test, assess, aliases=aliases, **kw)  # type: ignore[arg-type]


PCI: tuple[Control, ...] = (
    _pci(
        "2.2.4",
        "2.2.2",
        "Only necessary services and functions enabled",
        "Only the services, protocols and functions the system needs are enabled.",
        "Requests that reach debug, diagnostic or configuration endpoints, or methods such as "
        "TRACE; whether each is needed is for the reviewer.",
        P,
    ),
    _pci(
        "3.3.1",
        "3.2",
        "No sensitive authentication data after authorisation",
        "CVV2, PIN and track data are not kept once a payment is authorised, logs included.",
        "Card-verification values (cvv, cvc, cid parameters with 3-4 digits) in URLs that "
        "reach the access log.",
        F,
        tagged="fail",
    ),
    _pci(
        "3.4.1",
        "3.3",
        "PAN masked when displayed",
        "Displays show at most the BIN and the last four digits unless a role needs more.",
        "Not visible in access logs. log-auditor itself never shows more than the first 6 "
        "and last 4 digits.",
        N,
        needs=(),
    ),
    _pci(
        "3.5.1",
        "3.4",
        "PAN unreadable wherever stored",
        "Stored card numbers are unreadable; the requirement names audit and troubleshooting "
        "logs explicitly.",
        "Luhn-valid card numbers in the URL path, query or Referer mean a cleartext PAN was "
        "written to the access log.",
        F,
        fail_on=("pii-in-url:pan",),
        tagged="fail",
    ),
    _pci(
        "4.2.1",
        "4.1",
        "Strong cryptography for PAN in transit",
        "Only trusted keys and secure protocol versions protect PAN on open networks.",
        "Requests served over plain HTTP (not a redirect to HTTPS) and TLS below 1.2, where the "
        "log format records the scheme or TLS version.",
        F,
        fail_on=("unencrypted-transport",),
        tagged="fail",
        needs=("data", "scheme"),
    ),
    _pci(
        "6.2.4",
        "6.5.1,6.5.2,6.5.7,6.5.8,6.5.10",
        "Software resists common attacks",
        "Bespoke software is built to withstand injection, XSS, access-control and similar "
        "attacks.",
        "Injection, traversal and scanner probes, and whether the API answered them with "
        "success. Whether the code resisted them needs a human.",
        P,
        review_on=_ATTACKS,
    ),
    _pci(
        "6.4.2",
        "6.6",
        "Automated attack detection for public web apps",
        "An automated solution in front of public web applications detects and blocks or "
        "alerts on attacks.",
        "Attacks answered 2xx or 5xx rather than 403 suggest nothing blocked them.",
        P,
        review_on=_ATTACKS,
    ),
    _pci(
        "6.3.3",
        "6.2",
        "Known vulnerabilities patched",
        "Components are protected from known vulnerabilities by installing patches in time.",
        "Probes for known vulnerable paths and payloads, and whether they were answered with "
        "success; patch levels are not in the log.",
        P,
    ),
    _pci(
        "7.2.1",
        "7.1.2",
        "Access control model",
        "An access control model grants access by job function and least privilege.",
        "Administrative and privileged routes reached by unusual clients; who should have "
        "access is for the reviewer.",
        P,
        review_on=("admin-access",),
    ),
    _pci(
        "8.2.8",
        "8.1.8",
        "Re-authentication after 15 minutes idle",
        "A session idle for more than 15 minutes requires the user to authenticate again.",
        "Needs a session identifier in every log line; standard access-log formats lack it.",
        N,
        needs=(),
    ),
    _pci(
        "8.3.4",
        "8.1.6,8.1.7",
        "Lock-out after repeated failed logins",
        "A user id is locked after at most 10 invalid attempts, for at least 30 minutes.",
        "Failed-authentication bursts per client; failures continuing past 10 without a "
        "423 or 429 suggest no lock-out. Needs the user in the log for a firm answer.",
        P,
        review_on=_AUTH,
    ),
    _pci(
        "8.3.2",
        "8.2.1",
        "Authentication factors unreadable in transit and storage",
        "Passwords, tokens and keys are protected by strong cryptography when sent and stored.",
        "Passwords, tokens and API keys in URLs are written in clear text to every log; Basic "
        "credentials over plain HTTP. Request bodies are not visible.",
        P,
        fail_on=("secret-in-url",),
        tagged="fail",
    ),
    _pci(
        "8.6.2",
        "",
        "No hard-coded credentials for system accounts",
        "Passwords and keys of application and system accounts are not hard-coded in scripts "
        "or files.",
        "The same static API key in URLs from many clients suggests a key embedded in a "
        "client; the code itself is not visible.",
        P,
    ),
    _pci(
        "10.2.1.1",
        "10.2.1",
        "Access to cardholder data logged",
        "Logs capture every individual user access to cardholder data.",
        "Requests to card routes are in the log; which routes carry cardholder data is for "
        "the reviewer to confirm.",
        P,
    ),
    _pci(
        "10.2.1.2",
        "10.2.2",
        "Administrative actions logged",
        "Logs capture every action taken with administrative privileges.",
        "Requests to administrative routes and who made them.",
        P,
        review_on=("admin-access",),
    ),
    _pci(
        "10.2.1.3",
        "10.2.3",
        "Access to audit logs logged",
        "Logs capture all access to the audit logs themselves.",
        "Not visible in HTTP access logs.",
        N,
        needs=(),
    ),
    _pci(
        "10.2.1.4",
        "10.2.4",
        "Invalid logical access attempts logged",
        "Logs capture every invalid logical access attempt.",
        "401 and 403 responses are recorded per minute; bursts and credential stuffing are "
        "raised as findings for review.",
        F,
        review_on=_AUTH,
    ),
    _pci(
        "10.2.1.5",
        "10.2.5",
        "Changes to credentials logged",
        "Logs capture creation and changes of identification and authentication credentials.",
        "Requests to password, key and token routes are in the log; whether each change is "
        "traceable to a user needs a human.",
        P,
    ),
    _pci(
        "10.2.1.6",
        "10.2.6",
        "Start, stop and pause of audit logs logged",
        "Logs capture the start, stop or pause of the audit logs.",
        "Source silences and gaps per minute; log-auditor journals its own starts, stops, "
        "rotations and resumes.",
        P,
        review_on=("log-silence",),
    ),
    _pci(
        "10.2.1.7",
        "10.2.7",
        "Creation and deletion of system-level objects logged",
        "Logs capture creation and deletion of system-level objects.",
        "Not visible in HTTP access logs.",
        N,
        needs=(),
    ),
    _pci(
        "10.2.2",
        "10.3",
        "Audit records carry the required details",
        "Each record holds user, event type, time, success or failure, origin and resource.",
        "Fields the source format records; access logs name a user only with HTTP auth.",
        P,
    ),
    _pci(
        "10.3.4",
        "10.5.5",
        "Change detection on audit logs",
        "File-integrity monitoring or change detection protects audit logs.",
        "Truncation and rotation of each log file are detected and journalled; archived "
        "log content is not hashed.",
        P,
    ),
    _pci(
        "10.4.1",
        "10.6.1",
        "Security events reviewed at least daily",
        "Security events and critical logs are reviewed at least once a day.",
        "This report is the automated review; the sign-off block records the human review.",
        P,
        review_on=("*",),
    ),
    _pci(
        "10.4.1.1",
        "",
        "Automated audit log review",
        "Automated mechanisms perform the audit log reviews.",
        "log-auditor is such a mechanism; the reviewer confirms it runs for every day.",
        P,
    ),
    _pci(
        "10.4.3",
        "10.6.3",
        "Exceptions and anomalies addressed",
        "Failures and anomalies found in the review are addressed.",
        "Open findings and their acknowledgement times; follow-up is for the reviewer.",
        P,
        review_on=("*",),
    ),
    _pci(
        "10.5.1",
        "10.7",
        "Audit log retention",
        "Audit logs are kept for 12 months, the latest three months immediately available.",
        "How far back the store holds data; the original log files are outside its view.",
        P,
    ),
    _pci(
        "10.6.1",
        "10.4",
        "Time synchronisation",
        "System clocks are synchronised with a time source.",
        "Not assessable from access logs alone.",
        N,
        needs=(),
    ),
    _pci(
        "10.7.2",
        "10.8",
        "Failures of logging detected and reported",
        "Failures of critical security controls, audit logging included, are detected, "
        "alerted and addressed promptly.",
        "Minutes without data per source, silences and unparsed lines: gaps in the data "
        "completeness section.",
        F,
        review_on=("log-silence",),
    ),
    _pci(
        "11.3.1",
        "11.2",
        "Vulnerability scans",
        "Internal and external vulnerability scans run regularly.",
        "Not assessable from access logs.",
        N,
        needs=(),
    ),
    _pci(
        "11.5.1",
        "11.4",
        "Intrusion detection at the perimeter",
        "Intrusion-detection or -prevention techniques watch traffic into the CDE.",
        "Scanner, injection and enumeration findings supplement (not replace) an IDS.",
        P,
        review_on=(*_ATTACKS, "enumeration"),
    ),
    _pci(
        "11.6.1",
        "",
        "Payment page tamper detection",
        "Unauthorised changes to payment pages as received by the browser are detected.",
        "Not assessable from access logs.",
        N,
        needs=(),
    ),
)


def _owasp(ref: str, title: str, summary: str, test: str, assess: Assess, **kw: object) -> Control:
    return Control("owasp", ref, title, summary, test, assess, **kw)  # type: ignore[arg-type]


OWASP: tuple[Control, ...] = (
    _owasp(
        "API1",
        "Broken object level authorisation",
        "Every access to an object by id checks that the caller may use that object.",
        "One client walking many distinct or sequential ids per route (enumeration). "
        "Ownership itself is not in the log.",
        P,
        review_on=("enumeration",),
    ),
    _owasp(
        "API2",
        "Broken authentication",
        "Authentication cannot be bypassed, brute-forced or leaked.",
        "Failed-authentication bursts, credential stuffing, and tokens or passwords in URLs.",
        P,
        fail_on=("secret-in-url",),
        review_on=_AUTH,
    ),
    _owasp(
        "API3",
        "Broken object property level authorisation",
        "Responses expose and requests change only the properties the caller may use.",
        "Not assessable from access logs (response bodies are not logged).",
        N,
        needs=(),
    ),
    _owasp(
        "API4",
        "Unrestricted resource consumption",
        "Requests, sizes and costs are limited per client.",
        "Request-volume anomalies and error spikes per client and route.",
        P,
        review_on=("volume-anomaly", "error-spike"),
    ),
    _owasp(
        "API5",
        "Broken function level authorisation",
        "Administrative functions are reachable only by administrators.",
        "Requests to administrative routes by unusual clients.",
        P,
        review_on=("admin-access",),
    ),
    _owasp(
        "API6",
        "Unrestricted access to sensitive business flows",
        "Flows such as sign-up or checkout are protected against automated abuse.",
        "Per-client rates on flow routes; which flows are sensitive needs a human.",
        P,
    ),
    _owasp(
        "API7",
        "Server-side request forgery",
        "User-supplied URLs are validated before the server fetches them.",
        "URL parameters pointing at metadata services, localhost or private ranges.",
        P,
        review_on=("injection-probe",),
    ),
    _owasp(
        "API8",
        "Security misconfiguration",
        "The stack is hardened: TLS everywhere, no debug endpoints, no verbose errors.",
        "Plain-HTTP traffic, error spikes and probes for debug or configuration paths.",
        P,
        fail_on=("unencrypted-transport",),
        review_on=("error-spike", "scanner-probe"),
    ),
    _owasp(
        "API9",
        "Improper inventory management",
        "Every exposed host and API version is known and retired when obsolete.",
        "Deprecated versions and unknown paths still receiving traffic.",
        P,
    ),
    _owasp(
        "API10",
        "Unsafe consumption of APIs",
        "Data from third-party APIs is validated like user input.",
        "Not assessable from client-side access logs.",
        N,
        needs=(),
    ),
)


def _gdpr(ref: str, title: str, summary: str, test: str, assess: Assess, **kw: object) -> Control:
    return Control("gdpr", ref, title, summary, test, assess, **kw)  # type: ignore[arg-type]


GDPR: tuple[Control, ...] = (
    _gdpr(
        "Art.5(1)(c)",
        "Data minimisation",
        "Personal data is adequate, relevant and limited to what the purpose needs.",
        "E-mail addresses, phone numbers, national ids, IBANs or card numbers in URLs end up "
        "in every log, proxy and Referer.",
        F,
        fail_on=("pii-in-url",),
        tagged="fail",
    ),
    _gdpr(
        "Art.5(1)(f)",
        "Integrity and confidentiality",
        "Personal data is protected against unauthorised processing, loss or damage.",
        "Plain HTTP, credentials in URLs, and attacks that the API answered with success.",
        P,
        fail_on=("unencrypted-transport", "secret-in-url"),
        review_on=_ATTACKS,
    ),
    _gdpr(
        "Art.25",
        "Data protection by design and by default",
        "Measures such as pseudonymisation and minimisation are built into processing.",
        "Personal data in URLs is a design defect of the API (e.g. an e-mail in a GET query).",
        P,
        fail_on=("pii-in-url",),
    ),
    _gdpr(
        "Art.30(1)(g)",
        "Records of processing: security measures",
        "The record of processing describes the technical and organisational measures.",
        "Not assessable from logs; this report can be filed as evidence for the record.",
        N,
        needs=(),
    ),
    _gdpr(
        "Art.32",
        "Security of processing",
        "Confidentiality, integrity and availability are ensured and tested regularly.",
        "Brute force, enumeration, scanning, error spikes and volume anomalies.",
        P,
        review_on=(*_AUTH, "enumeration", "scanner-probe", "error-spike", "volume-anomaly"),
    ),
    _gdpr(
        "Art.33",
        "Breach notification within 72 hours",
        "A personal-data breach is reported to the authority within 72 hours of awareness.",
        "High and critical findings show when they were detected and the 72-hour deadline; "
        "whether they are breaches needs a human.",
        P,
        review_min_severity=3,
    ),
    _gdpr(
        "Art.87",
        "National identification numbers",
        "National identification numbers are processed only with appropriate safeguards.",
        "National ids and social security numbers in URLs are copied into every log.",
        P,
        fail_on=("pii-in-url:national-id", "pii-in-url:ssn"),
    ),
    _gdpr(
        "Art.35(7)(d)",
        "DPIA: measures against the risks",
        "The impact assessment names the measures that address the risks.",
        "Not assessable from logs; attack findings are listed for comparison with other tools.",
        N,
        needs=(),
    ),
)

CONTROLS: tuple[Control, ...] = PCI + OWASP + GDPR
CONTROL_BY_ID: dict[str, Control] = {c.id: c for c in CONTROLS}
ALIAS_INDEX: dict[str, Control] = {a: c for c in CONTROLS for a in c.aliases}


def catalogue_hash() -> str:
    """SHA-256 over the catalogue's content, so a changed mapping changes the hash."""
    h = hashlib.sha256(CATALOGUE_VERSION.encode())
    for c in CONTROLS:
        fields = (
            c.id,
            c.title,
            c.summary,
            c.test,
            c.assess.value,
            *c.fail_on,
            "|",
            *c.review_on,
            "|",
            c.tagged,
            str(c.review_min_severity),
            *c.needs,
            "|",
            *c.aliases,
        )
        h.update("\x1f".join(fields).encode())
        h.update(b"\x1e")
    return h.hexdigest()
