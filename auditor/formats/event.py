"""Raw fields → a redacted ``Event``, and a fast way to build frozen events.

``build_event`` is the one place that decides precedence between fields (which of
``$scheme``, ``$https``, an absolute-form request line or the configured listener scheme
says whether a request was plain HTTP) and where every text that can hold PII goes through
the redactor. The hot CLF decoder repeats its logic inline for speed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import cast

from auditor.formats.spec import BoundDecode, Ctx
from auditor.formats.times import parse_time
from auditor.model import Event, Exposure, Line
from auditor.normalize import (
    norm_http_version,
    norm_ip,
    norm_scheme,
    norm_tls,
    parse_absolute,
    parse_request_line,
    route_template,
    scheme_from_https,
    split_client,
    split_hostport,
    split_target,
    to_float,
    to_int,
)

_FIELDS = (
    "timestamp",
    "source",
    "format",
    "client_ip",
    "client_port",
    "method",
    "scheme",
    "host",
    "server_port",
    "path",
    "route",
    "query",
    "http_version",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "user_name",
    "user_agent",
    "referrer",
    "tls_version",
    "request_id",
    "forwarded_for",
    "file",
    "offset",
    "exposures",
)


class _Draft:
    """A mutable twin of ``Event`` with the same slot layout; ``_Draft(...)`` *is* an Event.

    A frozen dataclass sets each of its 26 fields through ``object.__setattr__``, which
    costs more than parsing the line. The draft fills plain slots, then becomes an
    ``Event`` by ``__class__`` assignment (allowed between classes with identical slots):
    what the constructor returns is a genuine, immutable ``Event``.
    """

    __slots__ = _FIELDS

    def __init__(
        self,
        timestamp: datetime,
        source: str,
        format: str,
        client_ip: str | None,
        client_port: int | None,
        method: str | None,
        scheme: str | None,
        host: str | None,
        server_port: int | None,
        path: str,
        route: str,
        query: str | None,
        http_version: str | None,
        status: int | None,
        bytes_in: int | None,
        bytes_out: int | None,
        duration_ms: float | None,
        user_name: str | None,
        user_agent: str | None,
        referrer: str | None,
        tls_version: str | None,
        request_id: str | None,
        forwarded_for: str | None,
        file: str,
        offset: int,
        exposures: tuple[Exposure, ...],
    ) -> None:
        self.timestamp = timestamp
        self.source = source
        self.format = format
        self.client_ip = client_ip
        self.client_port = client_port
        self.method = method
        self.scheme = scheme
        self.host = host
        self.server_port = server_port
        self.path = path
        self.route = route
        self.query = query
        self.http_version = http_version
        self.status = status
        self.bytes_in = bytes_in
        self.bytes_out = bytes_out
        self.duration_ms = duration_ms
        self.user_name = user_name
        self.user_agent = user_agent
        self.referrer = referrer
        self.tls_version = tls_version
        self.request_id = request_id
        self.forwarded_for = forwarded_for
        self.file = file
        self.offset = offset
        self.exposures = exposures
        self.__class__ = Event  # type: ignore[assignment]


def _fast_new_event(*args: object) -> Event:
    return cast(Event, _Draft(*args))  # type: ignore[arg-type]


def _slow_new_event(*args: object) -> Event:
    return Event(*args)  # type: ignore[arg-type]


def _fast_path_works() -> bool:
    if getattr(Event, "__slots__", None) != _FIELDS:
        return False  # Event changed shape: stay correct, lose a little speed
    probe: list[object] = [datetime(2000, 1, 1)] + [None] * 25
    try:
        return _fast_new_event(*probe) == _slow_new_event(*probe)
    except TypeError:
        return False


FAST_EVENTS = _fast_path_works()
new_event = _fast_new_event if FAST_EVENTS else _slow_new_event
"""``new_event(*values in Event field order) -> Event``."""
EventType: Callable[..., Event] = _Draft if FAST_EVENTS else Event  # type: ignore[assignment]
"""Hot-path constructor: call with the 26 values positionally."""


def _clean(value: str | None) -> str | None:
    if value is None or value == "-" or not value:
        return None
    return value


def _duration_ms(raw: Mapping[str, str]) -> float | None:
    v = to_float(raw.get("duration_ms"))
    if v is not None:
        return v
    v = to_float(raw.get("duration_s"))
    if v is not None:
        return v * 1000.0
    v = to_float(raw.get("duration_us"))
    if v is not None:
        return v / 1000.0
    v = to_float(raw.get("duration_ns"))
    if v is not None:
        return v / 1_000_000.0
    return None


def _scheme(raw: Mapping[str, str], tls: str | None) -> str | None:
    s = norm_scheme(raw.get("forwarded_proto")) or norm_scheme(raw.get("scheme"))
    if s is None and "https" in raw:
        s = scheme_from_https(raw["https"])
    if s is None and (tls is not None or _clean(raw.get("sni"))):
        s = "https"
    return s


def _request(raw: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """(method, target, protocol) from a request line and/or separate fields."""
    get = raw.get
    method = _clean(get("method"))
    target = _clean(get("target"))
    proto = get("protocol")
    request = get("request")
    if request is not None and (method is None or target is None):
        m2, t2, p2 = parse_request_line(request)
        method = method or m2
        target = target or t2
        if proto is None and p2 is not None:
            proto = "HTTP/" + p2
    if target is None:
        p = _clean(get("path"))
        if p is not None:
            q = get("query")
            if q and q[0] == "?":
                q = q[1:]
            target = p + "?" + q if q and q != "-" else p
    return method, target, proto


def build_event(raw: Mapping[str, str], ctx: Ctx, line: Line, name: str) -> Event | None:
    """Normalize and redact one record of raw fields; ``None`` if it has no usable time."""
    get = raw.get
    ts = parse_time(get("time"))
    if ts is None:
        return None
    method, target, proto = _request(raw)
    tls = norm_tls(get("tls_version"))
    scheme = _scheme(raw, tls)
    host, port = split_hostport(get("host") or "")
    abs_scheme: str | None = None
    if target and target[0] != "/":
        absolute = parse_absolute(target)
        if absolute is not None:
            abs_scheme, abs_host, abs_port, target = absolute
            host = host or abs_host
            port = port if port is not None else abs_port
    if scheme is None:
        scheme = ctx.scheme or norm_scheme(abs_scheme)
    server_port = to_int(get("server_port"))
    if server_port is None:
        server_port = port
    path, query = split_target(target or "")
    redactor = ctx.redactor
    path, query, exposures = redactor.redact_target(path, query)
    referrer = _clean(get("referrer"))
    if referrer is not None:
        referrer, more = redactor.redact_url(referrer, "referer")
        if more:
            exposures = exposures + more
    ua = _clean(get("user_agent"))
    if ua is not None:
        ua = redactor.redact_text(ua)
    user = _clean(get("user"))
    if user is not None:
        user = redactor.redact_user(user)
    client_ip = norm_ip(_clean(get("client_ip")))
    client_port = to_int(get("client_port"))
    if client_ip is None or client_port is None:
        ip2, port2 = split_client(get("client"))
        client_ip = client_ip or ip2
        client_port = client_port if client_port is not None else port2
    return new_event(
        ts,
        ctx.source,
        name,
        client_ip,
        client_port,
        method,
        scheme,
        host,
        server_port,
        path,
        route_template(path),
        query,
        norm_http_version(proto),
        to_int(get("status")),
        to_int(get("bytes_in")),
        to_int(get("bytes_out")),
        _duration_ms(raw),
        user,
        ua,
        referrer,
        tls,
        _clean(get("request_id")),
        _clean(get("forwarded_for")),
        line.file,
        line.offset,
        exposures,
    )


class DictParser:
    """Base for formats that are cheap enough to go through a raw-field dict."""

    name: str = ""
    lenient = False

    def fields(self, text: str) -> dict[str, str] | None:
        raise NotImplementedError

    def probe(self, text: str) -> bool:
        return self.fields(text) is not None

    def bind(self, ctx: Ctx) -> BoundDecode:
        fields = self.fields
        name = self.name

        def decode(text: str, line: Line) -> Event | None:
            raw = fields(text)
            return None if raw is None else build_event(raw, ctx, line, name)

        return decode
