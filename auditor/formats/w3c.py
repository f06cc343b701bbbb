"""W3C extended log files: IIS, and AWS CloudFront standard logs.

The columns are named by a ``#Fields:`` directive, which a file carries at its start and
again wherever the server restarted (IIS). So a bound decoder is stateful *per file*: a
``#Fields:`` line passing through it (re)binds that file's columns. A file whose header
was not seen (reading resumed mid-file) falls back to the documented default columns when
the line has exactly that many. Directive lines (``#Version``, ``#Date``...) are never
events; the pipeline counts them neither as parsed nor as unparsed (see ``is_directive``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from auditor.formats.event import DictParser, assemble
from auditor.formats.spec import RAW_KEYS, Ctx
from auditor.model import Event, Line

# IIS 8.5+ default W3C fields.
IIS_DEFAULT = (
    "date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip"
    " cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken"
)
# CloudFront standard (legacy) log fields, in their documented order.
CLOUDFRONT_DEFAULT = (
    "date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status"
    " cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id"
    " x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher"
    " x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port"
    " time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len"
    " sc-range-start sc-range-end"
)

# W3C field (lower case) → canonical raw key. ``time-taken`` depends on the kind.
_KEYS: dict[str, str] = {
    "c-ip": "client_ip",
    "c-port": "client_port",
    "cs-method": "method",
    "cs-uri-stem": "path",
    "cs-uri-query": "query",
    "cs-uri": "target",
    "sc-status": "status",
    "sc-bytes": "bytes_out",
    "cs-bytes": "bytes_in",
    "cs-username": "user",
    "cs(user-agent)": "user_agent",
    "cs(referer)": "referrer",
    "cs(referrer)": "referrer",
    "cs-host": "host",
    "s-port": "server_port",
    "cs-version": "protocol",
    "cs-protocol-version": "protocol",
    "cs-protocol": "scheme",
    "ssl-protocol": "tls_version",
    "x-edge-request-id": "request_id",
    "x-forwarded-for": "forwarded_for",
    "cs(x-forwarded-for)": "forwarded_for",
    "cs(x-forwarded-proto)": "forwarded_proto",
}
KINDS = ("w3c", "cloudfront")
_DATE = re.compile(r"\d{4}-\d\d-\d\d").fullmatch
_TIME = re.compile(r"\d\d:\d\d:\d\d(?:\.\d{1,9})?").fullmatch
_METHOD = re.compile(r"[A-Z][A-Z0-9_-]{0,31}").fullmatch


# Where each raw key goes among ``assemble``'s raw arguments (they follow RAW_KEYS).
_PLACE = {key: i for i, key in enumerate(RAW_KEYS)}
_TIME_AT, _METHOD_AT, _STATUS_AT = _PLACE["time"], _PLACE["method"], _PLACE["status"]
_UA_AT, _XFF_AT = _PLACE["user_agent"], _PLACE["forwarded_for"]


def is_directive(text: str) -> bool:
    """A W3C directive or comment line (``#Fields:``, ``#Version:``, ``#Date:``, ``# ...``):
    never an event, and not unparsed garbage either."""
    return text[:1] == "#"


@dataclass(frozen=True, slots=True)
class Layout:
    """One ``#Fields:`` header, compiled: which column feeds which raw key."""

    kind: str  # "w3c" (IIS and other servers) or "cloudfront"
    columns: tuple[str, ...]  # the field names, lower case
    keys: tuple[tuple[int, str], ...]  # (column index, raw key)
    date: int  # column index of ``date`` (-1: none)
    time: int  # column index of ``time``
    at: tuple[tuple[int, int], ...] = ()  # ``keys`` as (column index, place in RAW_KEYS)

    @property
    def width(self) -> int:
        return len(self.columns)


def layout(fields: str) -> Layout | None:
    """``date time cs-method ...`` (the text after ``#Fields:``) → a layout, or ``None``."""
    columns = tuple(f.lower() for f in fields.split())
    if "time" not in columns or not columns:
        return None
    kind = "cloudfront" if "x-edge-location" in columns or "x-edge-request-id" in columns else "w3c"
    keys: list[tuple[int, str]] = []
    seen: set[str] = set()
    for i, col in enumerate(columns):
        key = _KEYS.get(col)
        if col == "time-taken":
            key = "duration_s" if kind == "cloudfront" else "duration_ms"
        elif col == "cs(host)":
            key = "host" if kind == "w3c" else None  # CloudFront: the distribution's name
        elif col == "x-host-header":
            key = "host"
        if key is None:
            continue
        if key in seen:  # e.g. cs-host and x-host-header: the viewer's Host wins
            keys = [(j, k) for j, k in keys if k != key]
        seen.add(key)
        keys.append((i, key))
    date = columns.index("date") if "date" in columns else -1
    at = tuple((i, _PLACE[key]) for i, key in keys)
    return Layout(kind, columns, tuple(keys), date, columns.index("time"), at)


def header_layout(text: str) -> Layout | None:
    """The layout a ``#Fields:`` line declares; ``None`` for other lines."""
    if text[:8].lower() != "#fields:":
        return None
    return layout(text[8:])


DEFAULTS: dict[str, Layout] = {}
for _kind, _fields in (("w3c", IIS_DEFAULT), ("cloudfront", CLOUDFRONT_DEFAULT)):
    _lay = layout(_fields)
    assert _lay is not None and _lay.kind == _kind
    DEFAULTS[_kind] = _lay


def _split(text: str) -> list[str]:
    return text.split("\t") if "\t" in text else text.split(" ")


def raw_fields(lay: Layout, text: str) -> dict[str, str] | None:
    """One data line under ``lay`` → raw fields, or ``None`` if it does not fit."""
    values = _split(text.rstrip("\r"))
    if len(values) != lay.width:
        return None
    t = values[lay.time]
    if not _TIME(t):
        return None
    if lay.date >= 0:
        d = values[lay.date]
        if not _DATE(d):
            return None
        stamp = f"{d}T{t}Z"  # W3C extended logs are in UTC
    else:
        return None  # a time of day without a #Date context: not worth guessing
    raw = {"time": stamp}
    for i, key in lay.keys:
        v = values[i]
        if v and v != "-":
            raw[key] = v
    method = raw.get("method")
    if method is None or not _METHOD(method) or not raw.get("status", "0").isdigit():
        return None
    ua = raw.get("user_agent")
    if ua is not None:
        # IIS writes spaces as "+"; CloudFront percent-encodes the user agent.
        raw["user_agent"] = unquote(ua) if lay.kind == "cloudfront" else ua.replace("+", " ")
    if lay.kind == "cloudfront" and "forwarded_for" in raw:
        raw["forwarded_for"] = unquote(raw["forwarded_for"])
    return raw


def event_args(lay: Layout, text: str) -> list[str | None] | None:
    """``raw_fields`` as ``assemble``'s raw arguments (RAW_KEYS order, ``None``: absent):
    the same values, without a dict built and then read back key by key."""
    values = _split(text.rstrip("\r"))
    if len(values) != lay.width:
        return None
    t = values[lay.time]
    if not _TIME(t) or lay.date < 0:
        return None
    d = values[lay.date]
    if not _DATE(d):
        return None
    args: list[str | None] = [None] * len(_PLACE)
    args[_TIME_AT] = f"{d}T{t}Z"  # W3C extended logs are in UTC
    for i, at in lay.at:
        v = values[i]
        if v and v != "-":
            args[at] = v
    method, status = args[_METHOD_AT], args[_STATUS_AT]
    if method is None or not _METHOD(method) or (status is not None and not status.isdigit()):
        return None
    ua = args[_UA_AT]
    cloudfront = lay.kind == "cloudfront"
    if ua is not None:
        args[_UA_AT] = unquote(ua) if cloudfront else ua.replace("+", " ")
    xff = args[_XFF_AT]
    if cloudfront and xff is not None:
        args[_XFF_AT] = unquote(xff)
    return args


def _by_width(text: str, kinds: tuple[str, ...]) -> Layout | None:
    n = len(_split(text))
    for kind in kinds:
        lay = DEFAULTS[kind]
        if lay.width == n:
            return lay
    return None


class W3cDecode:
    """A bound W3C decoder: remembers each file's ``#Fields:`` layout."""

    def __init__(self, parser: W3cParser, ctx: Ctx) -> None:
        self.parser = parser
        self.ctx = ctx
        self.layouts: dict[str, Layout] = {}

    def header(self, file: str, text: str) -> Layout | None:
        """Feed a directive line of ``file``; returns the layout if it was ``#Fields:``
        of a kind this parser reads (the file's columns are rebound)."""
        lay = header_layout(text)
        if lay is None or lay.kind not in self.parser.kinds:
            return None
        self.layouts[file] = lay
        return lay

    def __call__(self, text: str, line: Line) -> Event | None:
        if text[:1] == "#":
            self.header(line.file, text)
            return None
        lay = self.layouts.get(line.file) or _by_width(text, self.parser.kinds)
        if lay is None:
            return None
        args = event_args(lay, text)
        if args is None:
            return None
        name = lay.kind if self.parser.kind_names else self.parser.name
        return assemble(self.ctx, line, name, *args)


class W3cParser(DictParser):
    """W3C extended / IIS and CloudFront. Without a header (``fields``/``probe`` on one
    line) only the default columns of each kind are known."""

    def __init__(self, name: str, kinds: tuple[str, ...] = KINDS, kind_names: bool = False) -> None:
        self.name = name
        self.kinds = kinds
        self.kind_names = kind_names

    def fields(self, text: str) -> dict[str, str] | None:
        if text[:1] == "#":
            return None
        lay = _by_width(text, self.kinds)
        return None if lay is None else raw_fields(lay, text)

    def name_for(self, text: str) -> str | None:
        lay = _by_width(text, self.kinds) if text[:1] != "#" else None
        if lay is None or raw_fields(lay, text) is None:
            return None
        return lay.kind if self.kind_names else self.name

    def bind(self, ctx: Ctx) -> W3cDecode:
        return W3cDecode(self, ctx)
