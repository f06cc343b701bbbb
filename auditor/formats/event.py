"""Raw fields → a redacted ``Event``, and a fast way to build frozen events.

``build_event`` is the one place that decides precedence between fields (which of
``$scheme``, ``$https``, an absolute-form request line or the configured listener scheme
says whether a request was plain HTTP) and where every text that can hold PII goes through
the redactor. The hot CLF decoder repeats its logic inline for speed.
"""

from __future__ import annotations

import ast
import linecache
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache
from types import CodeType
from typing import Any, TypeVar, cast

from auditor.formats.spec import BoundDecode, Ctx
from auditor.formats.times import TIME_CACHE, epoch_time, parse_new_time
from auditor.model import Event, Exposure, Line, Place
from auditor.normalize import (
    ROUTE_CACHE,
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


# Bounded memos of pure per-string normalizations whose inputs repeat line after line and
# are stored unredacted anyway (host header, protocol, scheme): no secret is kept here.
_MEMO_MAX = 4096
_T = TypeVar("_T")
_MEMO_MAX_LEN = 256
_HOSTPORTS: dict[str, tuple[str | None, int | None]] = {}
_VERSIONS: dict[str, str | None] = {}
_SCHEMES: dict[str, str | None] = {}
_TLSES: dict[str, str | None] = {}
_STATUS = {f"{i:03d}": i for i in range(1000)}  # "200" -> 200, as to_int would


def _remember(memo: dict[str, _T], value: str, result: _T) -> _T:
    """Keep ``result`` for ``value`` in a bounded memo (cleared when full); return it."""
    if len(value) <= _MEMO_MAX_LEN:
        if len(memo) >= _MEMO_MAX:
            memo.clear()
        memo[value] = result
    return result


def _memo_hostport(value: str) -> tuple[str | None, int | None]:
    return _remember(_HOSTPORTS, value, split_hostport(value))


def _memo_version(value: str) -> str | None:
    return _remember(_VERSIONS, value, norm_http_version(value))


def _memo_scheme(value: str) -> str | None:
    return _remember(_SCHEMES, value, norm_scheme(value))


def _memo_tls(value: str) -> str | None:
    return _remember(_TLSES, value, norm_tls(value))


def build_event(raw: Mapping[str, str], ctx: Ctx, line: Place, name: str) -> Event | None:
    """Normalize and redact one record of raw fields; ``None`` if it has no usable time."""
    get = raw.get
    return assemble(
        ctx,
        line,
        name,
        get("time"),
        get("client"),
        get("client_ip"),
        get("client_port"),
        get("method"),
        get("request"),
        get("target"),
        get("path"),
        get("query"),
        get("protocol"),
        get("status"),
        get("bytes_in"),
        get("bytes_out"),
        get("duration_s"),
        get("duration_ms"),
        get("duration_us"),
        get("duration_ns"),
        get("user"),
        get("user_agent"),
        get("referrer"),
        get("host"),
        get("server_port"),
        get("scheme"),
        get("https"),
        get("forwarded_proto"),
        get("tls_version"),
        get("sni"),
        get("request_id"),
        get("forwarded_for"),
    )


Num = str | int | None
"""A raw number: the text as logged, or an ``int`` a JSON record held (the same value
``to_int``/``to_float`` would read from its text, without the round trip)."""


def _int(value: Num) -> int | None:
    if value is None or value.__class__ is int:
        return value
    return to_int(value)  # type: ignore[arg-type]


def _float(value: Num | float) -> float | None:
    """``to_float`` of the value's text (a JSON number's ``repr``)."""
    if value is None:
        return None
    if value.__class__ is float:
        return value if value - value == 0.0 else None
    if value.__class__ is int:
        try:
            return float(value)
        except OverflowError:  # its text reads as inf, which to_float refuses
            return None
    return to_float(value)  # type: ignore[arg-type]


def _duration(s: Num | float, ms: Num | float, us: Num | float, ns: Num | float) -> float | None:
    """The first duration present, in milliseconds."""
    if ms is not None:
        v = _float(ms)
        if v is not None:
            return v
    if s is not None:
        v = _float(s)
        if v is not None:
            return v * 1000.0
    if us is not None:
        v = _float(us)
        if v is not None:
            return v / 1000.0
    if ns is not None:
        v = _float(ns)
        if v is not None:
            return v / 1_000_000.0
    return None


def assemble(  # noqa: C901 - one flat function: it runs per line
    ctx: Ctx,
    line: Place,
    name: str,
    time: str | float | None,
    client: str | None,
    client_ip: str | None,
    client_port: Num,
    method: str | None,
    request: str | None,
    target: str | None,
    path: str | None,
    query: str | None,
    protocol: str | None,
    status: Num,
    bytes_in: Num,
    bytes_out: Num,
    duration_s: Num | float,
    duration_ms: Num | float,
    duration_us: Num | float,
    duration_ns: Num | float,
    user: str | None,
    user_agent: str | None,
    referrer: str | None,
    host: str | None,
    server_port: Num,
    scheme: str | None,
    https: str | None,
    forwarded_proto: str | None,
    tls_version: str | None,
    sni: str | None,
    request_id: str | None,
    forwarded_for: str | None,
) -> Event | None:
    """``build_event`` on the raw fields given one by one (in ``RAW_KEYS`` order, ``None``
    when absent), so that a generated JSON decoder needs no dict in between.

    The small helpers of ``auditor.normalize`` are inlined where that is all they do for
    the usual value (``_clean``, ``to_int`` of a status, ``norm_ip`` of an address with
    no ``:``/``[``), and repeating pure results (host, protocol, scheme) come from memos.

    The generated JSON decoders run this body as their own (``assemble_inline``): it reads
    only its parameters, its locals and this module's globals, and ends in a ``return``.
    """
    if time is None or time.__class__ is str:
        if not time:
            return None  # parse_time gives None for no text
        ts = _time_get(time)
        if ts is None:
            ts = parse_new_time(time)
            if ts is None:
                return None
    elif time.__class__ is float and 1e8 <= time < 1e11:
        # epoch seconds (Caddy): epoch_time's case, inline (no unit to scale, no year
        # out of range)
        ts = _fromtimestamp(time, UTC)
    elif time.__class__ is int and 100_000_000 <= time < 10**19:
        # ns (Cloudflare), µs or ms (Kong) since the epoch: epoch_time's case, inline,
        # scaled by the float's magnitude as _from_epoch does (every result in range)
        f = float(time)
        if f >= 1e17:
            f /= 1e9
        elif f >= 1e14:
            f /= 1e6
        elif f >= 1e11:
            f /= 1e3
        ts = _fromtimestamp(f, UTC)
    else:
        ts = epoch_time(time)  # type: ignore[arg-type]
        if ts is None:
            return None
    # method, target, protocol: separate fields first, then the request line
    if not method or method == "-":
        method = None
    if not target or target == "-":
        target = None
    proto = protocol
    if request is not None and (method is None or target is None):
        m2, t2, p2 = parse_request_line(request)
        method = method or m2
        target = target or t2
        if proto is None and p2 is not None:
            proto = "HTTP/" + p2
    if target is None and path and path != "-":
        q = query
        if q and q[0] == "?":
            q = q[1:]
        target = path + "?" + q if q and q != "-" else path
    if tls_version is not None:
        tls = _TLSES[tls_version] if tls_version in _TLSES else _memo_tls(tls_version)
    else:
        tls = None
    # scheme: X-Forwarded-Proto, $scheme, $https, then any sign of TLS
    s = forwarded_proto
    sch = (_SCHEMES[s] if s in _SCHEMES else _memo_scheme(s)) if s else None
    if sch is None:
        s = scheme
        if s:
            sch = _SCHEMES[s] if s in _SCHEMES else _memo_scheme(s)
        if sch is None:
            if https is not None:
                sch = scheme_from_https(https)
            if sch is None and (tls is not None or (sni and sni != "-")):  # _clean(sni)
                sch = "https"
    if host:
        hp = _HOSTPORTS.get(host)
        host, port = hp if hp is not None else _memo_hostport(host)
    else:
        host, port = None, None
    abs_scheme: str | None = None
    if target and target[0] != "/":
        absolute = parse_absolute(target)
        if absolute is not None:
            abs_scheme, abs_host, abs_port, target = absolute
            host = host or abs_host
            port = port if port is not None else abs_port
    if sch is None:
        sch = ctx.scheme or norm_scheme(abs_scheme)
    # _int of a port, with the usual cases inline: a JSON integer, or ASCII digits as text
    if server_port is None:
        sport = port
    else:
        if server_port.__class__ is int:
            sport = server_port
        elif server_port.isdigit() and server_port.isascii():  # type: ignore[union-attr]
            sport = int(server_port)
        else:
            sport = _int(server_port)
        if sport is None:
            sport = port
    qry: str | None
    if target:
        pth, sep, qry = target.partition("?")
        if not sep:
            qry = None
    else:
        pth, qry = "", None
    redactor = ctx.redactor
    pth, qry, exposures = redactor.redact_target(pth, qry)
    if not referrer or referrer == "-":
        referrer = None
    else:
        referrer, more = redactor.redact_url(referrer, "referer")
        if more:
            exposures = exposures + more
    ua = None if not user_agent or user_agent == "-" else redactor.redact_text(user_agent)
    if not user or user == "-":
        user = None
    else:
        user = redactor.redact_user(user)
    ip = client_ip
    if not ip or ip == "-":
        ip = None
    elif ":" in ip or "[" in ip:
        ip = norm_ip(ip)
    if client_port is None or client_port.__class__ is int:
        cport = client_port
    elif client_port.isdigit() and client_port.isascii():  # type: ignore[union-attr]
        cport = int(client_port)
    else:
        cport = _int(client_port)
    if (ip is None or cport is None) and client:
        # split_client, with the usual IPv4 "ip:port" inline
        ip2: str | None
        port2: int | None
        if client.count(":") == 1 and "[" not in client:
            ip2, _, port2s = client.partition(":")
            if port2s.isdigit() and port2s.isascii():
                if not ip2 or ip2 == "-":
                    ip2 = None
                port2 = int(port2s)
            else:
                ip2, port2 = split_client(client)
        else:
            ip2, port2 = split_client(client)
        ip = ip or ip2
        cport = cport if cport is not None else port2
    if proto:
        version = _VERSIONS[proto] if proto in _VERSIONS else _memo_version(proto)
    else:
        version = None
    code: int | None
    if status is None or status.__class__ is int:
        code = status
    else:
        code = _STATUS.get(status)  # type: ignore[arg-type]
        if code is None:
            code = to_int(status)  # type: ignore[arg-type]
    if not request_id or request_id == "-":
        request_id = None
    if not forwarded_for or forwarded_for == "-":
        forwarded_for = None
    # _duration, with its usual cases inline: a finite JSON number in ms, or else in s, or
    # else a JSON integer in ns (Traefik)
    dur: float | None
    if duration_ms is not None:
        c = duration_ms.__class__
        if c is int and -_F_MAX < duration_ms < _F_MAX:  # type: ignore[operator]
            dur = float(duration_ms)
        elif c is float and duration_ms - duration_ms == 0.0:  # type: ignore[operator]
            dur = duration_ms  # type: ignore[assignment]
        else:
            dur = _duration(duration_s, duration_ms, duration_us, duration_ns)
    elif duration_s.__class__ is float and duration_s - duration_s == 0.0:
        dur = duration_s * 1000.0
    elif (
        duration_s is None
        and duration_us is None
        and duration_ns.__class__ is int
        and -_F_MAX < duration_ns < _F_MAX
    ):
        dur = float(duration_ns) / 1_000_000.0
    else:
        dur = _duration(duration_s, duration_ms, duration_us, duration_ns)
    if bytes_in is not None and bytes_in.__class__ is not int:
        bytes_in = _int(bytes_in)
    if bytes_out is not None and bytes_out.__class__ is not int:
        bytes_out = _int(bytes_out)
    if not FAST_EVENTS:
        return _slow_new_event(
            ts, ctx.source, name, ip, cport, method, sch, host, sport, pth,
            _route_get(pth) or route_template(pth), qry, version, code, bytes_in, bytes_out,
            dur, user, ua, referrer, tls, request_id, forwarded_for, line.file, line.offset,
            exposures,
        )  # fmt: skip
    # ``new_event``, written out: a blank draft's slots set here, then made an Event
    e = _blank(_Draft)
    e.timestamp = ts
    e.source = ctx.source
    e.format = name
    e.client_ip = ip
    e.client_port = cport
    e.method = method
    e.scheme = sch
    e.host = host
    e.server_port = sport
    e.path = pth
    e.route = _route_get(pth) or route_template(pth)
    e.query = qry
    e.http_version = version
    e.status = code
    e.bytes_in = bytes_in
    e.bytes_out = bytes_out
    e.duration_ms = dur
    e.user_name = user
    e.user_agent = ua
    e.referrer = referrer
    e.tls_version = tls
    e.request_id = request_id
    e.forwarded_for = forwarded_for
    e.file = line.file
    e.offset = line.offset
    e.exposures = exposures
    e.__class__ = Event  # type: ignore[assignment]
    return e  # type: ignore[return-value]


_blank = object.__new__


def _same_code(fn: ast.FunctionDef, code: CodeType) -> bool:
    """Whether ``fn`` compiles to the very bytecode of ``code`` (the source read back is
    the one that ran)."""
    try:
        module = compile(ast.Module([fn], []), code.co_filename, "exec")
    except (SyntaxError, ValueError):
        return False
    for const in module.co_consts:
        if isinstance(const, CodeType) and const.co_name == fn.name:
            return (const.co_code, const.co_names, const.co_varnames) == (
                code.co_code,
                code.co_names,
                code.co_varnames,
            )
    return False


def function_source(code: CodeType) -> ast.FunctionDef | None:
    """The syntax tree of the top-level function whose code is ``code``, read back from its
    module's source; ``None`` when the source is not at hand or is not the code that runs
    (the file changed since the module was imported)."""
    lines = linecache.getlines(code.co_filename)
    start = code.co_firstlineno - 1
    # the function ends before the next line that starts a top-level statement
    end = start + 1
    while end < len(lines) and lines[end][:1] in (" ", "\n", ")", "#"):
        end += 1
    try:
        fn = ast.parse("".join(lines[start:end])).body[0]
    except (SyntaxError, IndexError):
        return None
    if not isinstance(fn, ast.FunctionDef) or fn.name != code.co_name:
        return None
    return fn if _same_code(fn, code) else None


@cache
def assemble_inline() -> tuple[tuple[str, ...], str, dict[str, Any]] | None:
    """``assemble`` for a code generator to write into its own function (a generated
    JSON decoder: a call with 32 arguments costs about as much as the JSON lookups do):
    (its raw-field parameters in order, its body's source lines as written (indented by
    four spaces), the globals the body reads). The generated function must have ``ctx``,
    ``line``, ``name`` and each raw-field parameter as locals, and returns what the body
    returns. ``None`` when the source is not at hand (then call ``assemble``)."""
    code = assemble.__code__
    fn = function_source(code)
    if fn is None or len(fn.body) < 2:
        return None  # not at hand, or changed since the module was imported: call assemble
    lines = linecache.getlines(code.co_filename)
    start = code.co_firstlineno - 1
    first = fn.body[1] if isinstance(fn.body[0], ast.Expr) else fn.body[0]  # past the docstring
    body = "".join(lines[start + first.lineno - 1 : start + (fn.end_lineno or 0)])
    params = tuple(a.arg for a in fn.args.args[3:])  # after ctx, line, name
    return params, body.rstrip(), globals()


@cache
def assemble_row_inline() -> tuple[tuple[str, ...], str, dict[str, Any]] | None:
    """``assemble_inline`` whose body ends in ``return [...]``, the event's fields in
    ``Event`` field order, instead of making the ``Event``, with the target (path and
    query) as logged and its route None unless the memo has it: the body of a generated
    ``RawDecode``. ``None`` when ``assemble_inline`` is, or its end is not the one read
    here (every field set on the draft, in field order)."""
    inline = assemble_inline()
    if inline is None:
        return None
    params, body, scope = inline
    head, sep, tail = body.partition("\n    if not FAST_EVENTS:")
    if not sep:
        return None
    values: dict[str, str] = {}
    for name, expr in _DRAFT_SET.findall(tail):
        if name != "__class__":
            values[name] = expr.split("  #", 1)[0].strip()
    if tuple(values) != _FIELDS:
        return None
    # A path not in the route memo leaves its route None: ``route_templates`` makes the
    # routes of a chunk's new paths together (``auditor.rowchunk``).
    values["route"] = _MEMO_ONLY.sub(r"\1", values["route"])
    # The target is left as logged: ``auditor.rowchunk`` has the redactor look at a
    # chunk's targets together (``Redactor.dirty_targets``)
    if head.count(_REDACT_TARGET) != 1:
        return None
    head = head.replace(_REDACT_TARGET, "    exposures = ()\n")
    return params, head + "\n    return [" + ", ".join(values.values()) + "]", scope


_DRAFT_SET = re.compile(r"^    e\.(\w+) = (.+)$", re.MULTILINE)
_REDACT_TARGET = "    pth, qry, exposures = redactor.redact_target(pth, qry)\n"
_MEMO_ONLY = re.compile(r"^(_route_get\((\w+)\)) or route_template\(\2\)$")


_fromtimestamp = datetime.fromtimestamp
_F_MAX = 2**1023  # ints below this in size convert to float without OverflowError
_time_get = TIME_CACHE.get
_route_get = ROUTE_CACHE.get


class DictParser:
    """Base for formats that are cheap enough to go through a raw-field dict."""

    name: str = ""
    lenient = False

    def fields(self, text: str) -> dict[str, str] | None:
        raise NotImplementedError

    def event_fields(self, text: str) -> dict[str, str] | None:
        """``fields`` as far as ``build_event`` reads them (the decode path); a format
        whose lines carry fields only people read (``explain``) leaves those out here."""
        return self.fields(text)

    def probe(self, text: str) -> bool:
        return self.fields(text) is not None

    def bind(self, ctx: Ctx) -> BoundDecode:
        fields = self.event_fields
        name = self.name

        def decode(text: str, line: Line) -> Event | None:
            raw = fields(text)
            return None if raw is None else build_event(raw, ctx, line, name)

        return decode
