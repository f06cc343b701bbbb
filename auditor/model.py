"""The shared vocabulary: a raw line, a normalized event, an exposure, a finding hit.

Every value here is frozen; the pure core passes them around and the shell stores them.
Field names follow ECS where one fits (see ``ECS_NAMES``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Protocol


class Severity(IntEnum):
    """Ordered so that ``max()`` and ``>=`` work; the string form is CONTRACT.md's."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """``"high"`` → ``Severity.HIGH``; raises ``KeyError`` for anything else."""
        return cls[text.strip().upper()]


CATEGORIES: tuple[str, ...] = (
    "pii-in-url",
    "secret-in-url",
    "unencrypted-transport",
    "failed-auth-burst",
    "credential-stuffing",
    "volume-anomaly",
    "scanner-probe",
    "injection-probe",
    "enumeration",
    "admin-access",
    "error-spike",
    "log-silence",
)

PII_TYPES: tuple[str, ...] = (
    "email",
    "pan",
    "iban",
    "ssn",
    "phone",
    "national-id",
    "jwt",
    "aws-access-key",
    "google-api-key",
    "github-token",
    "stripe-key",
    "slack-token",
    "api-key",
    "password",
    "session-id",
    "basic-auth",
    "card-verification",  # CVV/CVC/PIN: sensitive authentication data (PCI DSS 3.3.1)
)


class Place(Protocol):
    """Where a line starts: all an event keeps of the line it came from (``Event.file``,
    ``Event.offset``). A ``Line`` is one; so is the cursor of a decoder that reads whole
    lines straight from bytes (``Pipeline.decode_whole_lines``)."""

    @property
    def file(self) -> str: ...

    @property
    def offset(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Line:
    """One complete line as read from a file, before parsing.

    ``offset`` is the byte offset of the line's first byte in ``file``; ``end`` the offset
    just after its newline, i.e. where reading resumes.
    """

    source: str
    file: str
    offset: int
    end: int
    text: str
    truncated: bool = False
    # A header line (W3C "#Fields:") read again when a file is resumed mid-way: decoded for
    # the columns it declares, not counted (it was counted when first read).
    replay: bool = False


@dataclass(frozen=True, slots=True)
class Exposure:
    """A PII value or secret found (and masked) in a URL part at ingest.

    The raw value never leaves the redaction function: only its masked form and a keyed
    hash (``digest``) that lets reports count distinct leaked values.
    """

    pii_type: str  # one of PII_TYPES
    location: str  # "path" | "query" | "referer" | "target"
    param: str | None  # query parameter name, None for a path segment
    masked: str  # e.g. "411111******1111", "j***@example.org", "[password]"
    digest: str  # keyed hash (hex) of the raw value
    detail: str | None = None  # e.g. "alg:none", "test-key"


@dataclass(frozen=True, slots=True)
class Event:
    """One normalized, redacted HTTP request. Only redacted text is ever put here."""

    timestamp: datetime  # aware, UTC  (ECS @timestamp)
    source: str  # configured source name (event.module-ish)
    format: str  # format name that parsed it
    client_ip: str | None  # source.ip
    client_port: int | None  # source.port
    method: str | None  # http.request.method, original case
    scheme: str | None  # url.scheme: "http" | "https" | None when the format does not say
    host: str | None  # url.domain
    server_port: int | None  # url.port / destination.port
    path: str  # url.path, redacted, as logged (percent-encoding kept)
    route: str  # templated path, e.g. /users/{id}
    query: str | None  # url.query, redacted
    http_version: str | None  # http.version, e.g. "1.1"
    status: int | None  # http.response.status_code
    bytes_in: int | None  # http.request.bytes
    bytes_out: int | None  # http.response.body.bytes
    duration_ms: float | None  # event.duration (as ms)
    user_name: str | None  # user.name
    user_agent: str | None  # user_agent.original
    referrer: str | None  # http.request.referrer, redacted
    tls_version: str | None  # tls.version, e.g. "1.2", "1.3"
    request_id: str | None  # http.request.id
    forwarded_for: str | None  # network.forwarded_ip (X-Forwarded-For as logged)
    file: str  # log.file.path
    offset: int  # log.offset: byte offset of the line
    exposures: tuple[Exposure, ...] = field(default=())


ECS_NAMES: dict[str, str] = {
    "timestamp": "@timestamp",
    "client_ip": "source.ip",
    "client_port": "source.port",
    "method": "http.request.method",
    "scheme": "url.scheme",
    "host": "url.domain",
    "server_port": "url.port",
    "path": "url.path",
    "query": "url.query",
    "http_version": "http.version",
    "status": "http.response.status_code",
    "bytes_in": "http.request.bytes",
    "bytes_out": "http.response.body.bytes",
    "duration_ms": "event.duration",
    "user_name": "user.name",
    "user_agent": "user_agent.original",
    "referrer": "http.request.referrer",
    "tls_version": "tls.version",
    "request_id": "http.request.id",
    "forwarded_for": "network.forwarded_ip",
    "file": "log.file.path",
    "offset": "log.offset",
}


@dataclass(frozen=True, slots=True)
class Hit:
    """What a detector emits: one or more events that count toward a finding.

    The store folds hits into findings: one per (rule, key, episode). ``key`` groups hits
    (e.g. the client IP, or ``route|ip``); an episode ends when no hit arrived for
    ``episode_gap_s`` seconds of log time.
    """

    rule_id: str
    title: str
    category: str
    severity: Severity
    key: str
    timestamp: datetime  # log time of the (last) event
    first_seen: datetime  # log time of the first event this hit covers
    count: int  # events covered by this hit
    source: str
    client_ip: str | None
    evidence: str  # redacted sample: method, path, masked value
    controls: tuple[str, ...]
    pii_type: str | None = None
    digest: str | None = None  # keyed hash of a leaked value, for distinct counts
    episode_gap_s: int = 3600
    # Per-request hits a detector folded into this one (``count`` of them, each count 1,
    # in time order, none a gap apart): the store folds them alike, so findings are those
    # the separate hits make. What ``scan`` reports as detection hits.
    emits: int = 1
