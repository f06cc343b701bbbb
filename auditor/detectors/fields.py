"""The fields a rule can test, and a lazy view of one event that decodes them on demand.

Rules match what an attacker meant, not how it was encoded: ``path``, ``query``, ``target``
and ``referrer`` are percent-decoded twice (``%252e`` is a dot), the ``raw_*`` fields are
as logged. Decoding costs a few microseconds, so the view does it only when a rule asks.
Every value here comes from the already redacted event.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from auditor.model import Event

TEXT, INT, FLOAT, BOOL = "text", "int", "float", "bool"

MAX_SCAN = 8192
"""Text conditions look at the first 8 KiB of a field: a hostile 1 MB URL stays cheap, and
``probe.long-url`` flags such URLs anyway."""
MAX_DECODE = 65536
"""Fields are percent-decoded up to here (the line reader's default cap, ``max_line_bytes``):
a hostile megabyte of escapes costs what 64 KiB cost, and a line that long was already
truncated on the way in."""


_SLASHES = re.compile(r"/{2,}")


_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _unquote(text: str) -> str:
    """``unquote(text, errors="replace")``, in C for long ASCII text.

    A hostile URL can hold 200,000 escapes; ``unquote`` takes a Python step for each.
    For ASCII text the result is the UTF-8 decoding of the escaped bytes, which
    ``unicode_escape`` builds once a lone ``%`` is written ``%25`` (it stays a ``%``).
    """
    if len(text) < 256 or not text.isascii():
        return unquote(text, errors="replace")
    if _ESCAPE.search(text) is None:  # only lone '%': nothing to decode
        return text
    fixed = _LONE_PERCENT.sub("%25", text).replace("\\", "\\\\").replace("%", "\\x")
    raw = fixed.encode("ascii").decode("unicode_escape").encode("latin-1")
    return raw.decode("utf-8", errors="replace")


def decode_url(text: str) -> str:
    """Percent-decode twice (``%252e%252e`` → ``..``); ``+`` stays a plus.

    Only the first ``MAX_DECODE`` characters are decoded; the rest stays as logged.
    """
    if "%" not in text:
        return text
    if len(text) > MAX_DECODE:
        return decode_url(text[:MAX_DECODE]) + text[MAX_DECODE:]
    once = _unquote(text)
    # Nothing decoded the first time (only lone '%'): the second round would not either.
    return _unquote(once) if "%" in once and once != text else once


def decode_path(text: str) -> str:
    """Decode twice, then collapse ``//`` and ``/./`` (``//phpMyAdmin`` is ``/phpMyAdmin``)."""
    text = decode_url(text)
    if "//" in text:
        text = _SLASHES.sub("/", text)
    while "/./" in text:
        text = text.replace("/./", "/")
    return text


def decode_query(text: str) -> str:
    """Form-decode twice: ``+`` is a space and ``%2B`` a plus (then a space: harmless)."""
    if "%" not in text and "+" not in text:
        return text
    if len(text) > MAX_DECODE:
        return decode_query(text[:MAX_DECODE]) + text[MAX_DECODE:]
    spaced = text.replace("+", " ")
    once = _unquote(spaced)
    return _unquote(once.replace("+", " ")) if "%" in once and once != spaced else once


def _target(ev: Event) -> str:
    return ev.path if ev.query is None else f"{ev.path}?{ev.query}"


_MISSING = object()  # not computed yet (a field's value may be None)
_LOWER_KEYS: dict[str, str] = {}  # field -> its key for the lower-cased text in the cache


class EventView:
    """One event plus the derived values rules ask for, each computed at most once.

    ``preds`` holds the names of the predicates (``auth_failure``...) the event satisfies;
    the detector fills it before rules are evaluated.
    """

    __slots__ = ("_cache", "_memo", "ev", "lazy", "preds", "t")

    def __init__(
        self,
        ev: Event,
        t: float,
        preds: frozenset[str] = frozenset(),
        lazy: Mapping[str, Any] | None = None,
    ) -> None:
        self.ev = ev
        self.t = t
        self.preds = preds
        self.lazy = lazy  # predicate name → clauses, evaluated on first use
        self._cache: dict[str, Any] = {}
        self._memo: dict[int, bool] | None = None

    @property
    def memo(self) -> dict[int, bool]:
        """Results of shared clauses for this event, by clause id (see ``Detector``)."""
        if self._memo is None:
            self._memo = {}
        return self._memo

    def get(self, name: str) -> Any:
        """The value of a field (``None`` when the log does not carry it)."""
        cache = self._cache
        value = cache.get(name, _MISSING)
        if value is not _MISSING:
            return value
        getter = _GETTERS.get(name)
        if getter is not None:
            value = getter(self)
        elif self.lazy is not None and name in self.lazy:
            value = False
            for clause in self.lazy[name]:
                for c in clause:
                    if not c.check(self):
                        break
                else:
                    value = True
                    break
        else:
            value = name in self.preds
        cache[name] = value
        return value

    def lower(self, name: str) -> str | None:
        """The lower-cased text of a field, for the case-insensitive operators."""
        key = _LOWER_KEYS.get(name)
        if key is None:  # one key string per field: its hash is computed once
            key = _LOWER_KEYS[name] = "\x00" + name
        cache = self._cache
        value: str | None = cache.get(key, _MISSING)
        if value is not _MISSING:
            return value
        raw = self.get(name)
        low = raw.lower() if isinstance(raw, str) else None
        cache[key] = low
        return low

    def text(self, name: str) -> str | None:
        """Alias of ``get`` for text fields, typed for callers."""
        value = self.get(name)
        return value if isinstance(value, str) else None


def _status_class(v: EventView) -> int | None:
    st = v.ev.status
    return None if st is None else st // 100


def _referrer(v: EventView) -> str | None:
    ref = v.ev.referrer
    return None if ref is None or ref == "-" else decode_url(ref)


def _raw_referrer(v: EventView) -> str | None:
    ref = v.ev.referrer
    return None if ref is None or ref == "-" else ref


def _user_agent(v: EventView) -> str | None:
    ua = v.ev.user_agent
    return None if ua is None or ua == "-" else ua


def _user_name(v: EventView) -> str | None:
    user = v.ev.user_name
    return None if user is None or user in ("-", "") else user


def _decoded_target(v: EventView) -> str:
    path = v.get("path")
    query = v.get("query")
    return path if query is None else f"{path}?{query}"


def _query(v: EventView) -> str | None:
    q = v.ev.query
    return None if q is None else decode_query(q)


_GETTERS: dict[str, Callable[[EventView], Any]] = {
    "method": lambda v: v.ev.method,
    "scheme": lambda v: v.ev.scheme,
    "host": lambda v: v.ev.host,
    "path": lambda v: decode_path(v.ev.path),
    "raw_path": lambda v: v.ev.path,
    "route": lambda v: v.ev.route,
    "query": _query,
    "raw_query": lambda v: v.ev.query,
    "target": _decoded_target,
    "raw_target": lambda v: _target(v.ev),
    "user_agent": _user_agent,
    "referrer": _referrer,
    "raw_referrer": _raw_referrer,
    "user_name": _user_name,
    "client_ip": lambda v: v.ev.client_ip,
    "forwarded_for": lambda v: v.ev.forwarded_for,
    "source": lambda v: v.ev.source,
    "format": lambda v: v.ev.format,
    "http_version": lambda v: v.ev.http_version,
    "tls_version": lambda v: v.ev.tls_version,
    "request_id": lambda v: v.ev.request_id,
    "file": lambda v: v.ev.file,
    "status": lambda v: v.ev.status,
    "status_class": _status_class,
    "server_port": lambda v: v.ev.server_port,
    "client_port": lambda v: v.ev.client_port,
    "bytes_in": lambda v: v.ev.bytes_in,
    "bytes_out": lambda v: v.ev.bytes_out,
    "target_length": lambda v: len(v.ev.path) + (len(v.ev.query) + 1 if v.ev.query else 0),
    "duration_ms": lambda v: v.ev.duration_ms,
    "has_exposures": lambda v: bool(v.ev.exposures),
}

FIELDS: dict[str, str] = {
    **dict.fromkeys(
        (
            "method",
            "scheme",
            "host",
            "path",
            "raw_path",
            "route",
            "query",
            "raw_query",
            "target",
            "raw_target",
            "user_agent",
            "referrer",
            "raw_referrer",
            "user_name",
            "client_ip",
            "forwarded_for",
            "source",
            "format",
            "http_version",
            "tls_version",
            "request_id",
            "file",
        ),
        TEXT,
    ),
    **dict.fromkeys(
        (
            "status",
            "status_class",
            "server_port",
            "client_port",
            "bytes_in",
            "bytes_out",
            "target_length",
        ),
        INT,
    ),
    "duration_ms": FLOAT,
    "has_exposures": BOOL,
}
"""Every field a condition, a ``by`` key or a ``distinct`` may name, with its kind."""

DIRECT_FIELDS = frozenset(
    {
        "method",
        "scheme",
        "host",
        "route",
        "client_ip",
        "forwarded_for",
        "source",
        "format",
        "http_version",
        "tls_version",
        "request_id",
        "file",
        "status",
        "server_port",
        "client_port",
        "bytes_in",
        "bytes_out",
        "duration_ms",
    }
)
"""Fields whose value is the ``Event`` attribute of the same name, as is (dispatchable)."""

URL_FIELDS = frozenset({"path", "query", "target"})
"""Decoded URL fields: gated together by one scan of the lower-cased target."""

CACHED_FIELDS = frozenset({"user_agent", "referrer"})
"""Fields whose values repeat (a few hundred user agents): matches are cached per value."""


def key_of(view: EventView, fields: tuple[str, ...]) -> str | None:
    """The grouping key of an event (``"203.0.113.7|/login"``); ``None`` if a part is missing."""
    if len(fields) == 1:
        value = view.get(fields[0])
        return None if value is None or value == "" else str(value)
    parts = []
    for name in fields:
        value = view.get(name)
        if value is None or value == "":
            return None
        parts.append(str(value))
    return "|".join(parts)


def evidence(ev: Event, extra: str | None = None, limit: int = 240) -> str:
    """A short redacted sample: ``GET /path?query -> 200`` (plus the field that matched)."""
    target = _target(ev)
    if len(target) > 160:
        target = target[:157] + "..."
    text = f"{ev.method or '-'} {target} -> {ev.status if ev.status is not None else '-'}"
    if extra:
        text = f"{text} {extra}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
