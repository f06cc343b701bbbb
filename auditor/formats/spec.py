"""What a source's format is (``FormatSpec``) and what a parser hands to the normalizer.

Every parser, whatever its syntax, produces the same *raw fields*: a dict of strings under
the canonical keys below, values exactly as logged (``"-"`` or empty meaning absent).
``build_event`` turns those into an ``Event``; ``parse_fields`` shows them to people.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from weakref import WeakKeyDictionary

from auditor.model import Event, Line, Place
from auditor.normalize import RedactorLike


@dataclass(frozen=True, slots=True)
class FormatSpec:
    """A source's log format as configured.

    ``name`` is ``"auto"``, a name from ``FORMAT_NAMES``, or ``"nginx-custom"`` /
    ``"apache-custom"`` / ``"json"`` together with ``log_format`` (the operator's nginx
    ``log_format`` or Apache ``LogFormat`` string) or ``fields`` (JSON: our field → their
    key, dotted paths allowed). ``scheme`` is the listener's scheme, used when the format
    does not log one.
    """

    name: str = "auto"
    log_format: str | None = None
    fields: dict[str, str] | None = None
    scheme: str | None = None


# Canonical raw keys (strings as logged). Several keys can feed one Event field; the
# normalizer picks the most specific one present.
RAW_KEYS: dict[str, str] = {
    "time": "timestamp in any supported shape (CLF, ISO 8601, epoch, yyyy/mm/dd)",
    "client": "client address with port, 'ip:port' or '[v6]:port'",
    "client_ip": "client address",
    "client_port": "client port",
    "method": "request method",
    "request": "the request line 'METHOD target HTTP/x'",
    "target": "request target: path and query (origin- or absolute-form)",
    "path": "path alone",
    "query": "query string alone (no '?')",
    "protocol": "'HTTP/1.1' or '1.1'",
    "status": "response status",
    "bytes_in": "request bytes",
    "bytes_out": "response bytes",
    "duration_s": "duration in seconds",
    "duration_ms": "duration in milliseconds",
    "duration_us": "duration in microseconds",
    "duration_ns": "duration in nanoseconds",
    "user": "authenticated user name",
    "user_agent": "User-Agent header",
    "referrer": "Referer header",
    "host": "requested host, may carry ':port'",
    "server_port": "listener port",
    "scheme": "'http' / 'https' (or ALB type, ws, wss, h2...)",
    "https": "'on' when TLS (nginx $https, Apache %{HTTPS}e)",
    "forwarded_proto": "X-Forwarded-Proto header",
    "tls_version": "TLS protocol version in any common spelling",
    "sni": "TLS server name (its presence implies TLS)",
    "request_id": "request id",
    "forwarded_for": "X-Forwarded-For header",
}

# A user's JSON ``fields`` mapping may name Event fields; these are their raw keys.
EVENT_TO_RAW: dict[str, str] = {
    "timestamp": "time",
    "user_name": "user",
    "http_version": "protocol",
    "referer": "referrer",
    "duration": "duration_ms",
}


class Ctx:
    """Per-decoder constants every parser needs: who we are and how to redact."""

    __slots__ = ("redactor", "scheme", "source")

    def __init__(self, source: str, redactor: RedactorLike, scheme: str | None) -> None:
        self.source = source
        self.redactor = redactor
        self.scheme = scheme


BoundDecode = Callable[[str, Line], Event | None]

RawDecode = Callable[[bytes, Place], list[Any] | None]
"""A ``BoundDecode`` that reads a line's bytes (with or without its newline) instead of
its text, and gives the event's fields as a list, in ``Event`` field order
(``Event(*fields)`` is the event the ``BoundDecode`` gives), not an ``Event``: for a chunk
of whole lines decoded straight into their store rows, without a ``Line`` or an ``Event``
made per line (``Pipeline.decode_whole_lines``). Its path and query are as logged, not
redacted yet, and its route None unless the route memo has the path: ``auditor.rowchunk``
redacts and templates a chunk's targets together, with the decoder's redactor, so that the
rows it makes are the events' rows. None where it cannot tell: the line then goes the
usual way, and must come out the same; it never decodes a line its ``BoundDecode`` would
not."""

_RAW_FORMS: WeakKeyDictionary[BoundDecode, RawDecode] = WeakKeyDictionary()


def add_raw_form(decode: BoundDecode, raw: RawDecode) -> None:
    """Register ``raw`` as the bytes form of ``decode`` (see ``RawDecode``)."""
    _RAW_FORMS[decode] = raw


def raw_form(decode: BoundDecode) -> RawDecode | None:
    """The bytes form of a bound decoder, if its parser gave it one (JSON formats)."""
    return _RAW_FORMS.get(decode)


class Parser(Protocol):
    """One log format. ``name`` goes into ``Event.format``; ``lenient`` says whether
    ``bind``'s decoder accepts lines that ``probe`` rejects."""

    name: str
    lenient: bool

    def fields(self, text: str) -> dict[str, str] | None:
        """Raw fields under canonical keys, or ``None`` if the text is not this format."""
        ...

    def probe(self, text: str) -> bool:
        """Strict match, for ``detect_format``: no lenient fallbacks."""
        ...

    def bind(self, ctx: Ctx) -> BoundDecode:
        """A fast ``(text, line) -> Event | None`` for one decoder."""
        ...
