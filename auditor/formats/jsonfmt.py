"""JSON-lines access logs: Caddy, Traefik, Envoy, Cloudflare, Kong, ECS, nginx ``escape=json``.

A *schema* maps each canonical raw key to candidate JSON paths, tried in order. The
generic ``json`` format picks a schema per line from a few telltale keys, so one source
can carry any of them; a user's ``fields`` mapping is tried before the defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from auditor.errors import ConfigError
from auditor.formats.event import DictParser, build_event
from auditor.formats.spec import EVENT_TO_RAW, RAW_KEYS, BoundDecode, Ctx
from auditor.model import Event, Line
from auditor.normalize import last_ip

Lookup = str | tuple[str, ...]  # a top-level key, or a path into nested objects
Schema = tuple[tuple[str, tuple[Lookup, ...]], ...]
# Keys that decide whether a record is a request at all: looked up first, so a record that
# is not one (startup messages, debug records) is rejected after a few lookups.
_FIRST = ("time", "method", "request", "target", "path")


def _lookups(path: str) -> tuple[Lookup, ...]:
    """``"a.b"`` → try the flat key ``"a.b"`` first, then ``a`` → ``b``."""
    if "." in path:
        return (path, tuple(path.split(".")))
    return (path,)


def schema(mapping: Mapping[str, str | tuple[str, ...]]) -> Schema:
    out: list[tuple[str, tuple[Lookup, ...]]] = []
    for key, paths in mapping.items():
        cands = (paths,) if isinstance(paths, str) else paths
        out.append((key, tuple(lk for p in cands for lk in _lookups(p))))
    out.sort(key=lambda kv: 0 if kv[0] in _FIRST else 1)
    return tuple(out)


TRAEFIK = schema(
    {
        "time": ("StartUTC", "time", "StartLocal"),
        "client_ip": "ClientHost",
        "client_port": "ClientPort",
        "client": "ClientAddr",
        "method": "RequestMethod",
        "target": "RequestPath",
        "protocol": "RequestProtocol",
        "status": ("DownstreamStatus", "OriginStatus", "DownstreamStatusLine"),
        "bytes_out": "DownstreamContentSize",
        "bytes_in": "RequestContentSize",
        "duration_ns": "Duration",
        "user": "ClientUsername",
        "user_agent": "request_User-Agent",
        "referrer": "request_Referer",
        "host": ("RequestHost", "RequestAddr"),
        "server_port": "RequestPort",
        # RequestScheme (Traefik >= 2.x); older versions only show the X-Forwarded-Proto
        # header Traefik itself sets on the forwarded request.
        "scheme": ("RequestScheme", "request_X-Forwarded-Proto"),
        "tls_version": ("TLSVersion", "TLSProtocol"),
        "forwarded_for": "request_X-Forwarded-For",
        "request_id": "request_X-Request-Id",
    }
)
CADDY = schema(
    {
        "time": "ts",
        "client_ip": ("request.client_ip", "request.remote_ip"),
        "method": "request.method",
        "target": "request.uri",
        "protocol": "request.proto",
        "status": "status",
        "bytes_out": "size",
        "bytes_in": "bytes_read",
        "duration_s": "duration",
        "user": "user_id",
        "user_agent": "request.headers.User-Agent",
        "referrer": "request.headers.Referer",
        "host": "request.host",
        "forwarded_for": "request.headers.X-Forwarded-For",
        "request_id": "request.headers.X-Request-Id",
    }
)
ENVOY = schema(
    {
        "time": ("start_time", "START_TIME"),
        "client": ("downstream_remote_address", "DOWNSTREAM_REMOTE_ADDRESS"),
        "method": ("method", ":method", "METHOD"),
        "target": ("x-envoy-origin-path", "x-envoy-original-path", "path", ":path"),
        "protocol": ("protocol", "PROTOCOL"),
        "status": ("response_code", "RESPONSE_CODE"),
        "bytes_out": ("bytes_sent", "BYTES_SENT"),
        "bytes_in": ("bytes_received", "BYTES_RECEIVED"),
        "duration_ms": ("duration", "DURATION"),
        "user_agent": ("user-agent", "user_agent"),
        "referrer": ("referer", "referrer"),
        "host": (":authority", "authority", "host"),
        "forwarded_for": ("x-forwarded-for", "x_forwarded_for"),
        "forwarded_proto": ("x-forwarded-proto",),
        "request_id": ("x-request-id", "request_id"),
        "sni": ("requested_server_name",),
        "tls_version": ("downstream_tls_version", "tls_version"),
    }
)
CLOUDFLARE = schema(
    {
        "time": ("EdgeStartTimestamp", "EdgeEndTimestamp"),
        "client_ip": "ClientIP",
        "client_port": "ClientSrcPort",
        "method": "ClientRequestMethod",
        "target": "ClientRequestURI",
        "path": "ClientRequestPath",
        "protocol": "ClientRequestProtocol",
        "status": "EdgeResponseStatus",
        "bytes_out": "EdgeResponseBytes",
        "bytes_in": "ClientRequestBytes",
        "user_agent": "ClientRequestUserAgent",
        "referrer": "ClientRequestReferer",
        "host": "ClientRequestHost",
        "scheme": "ClientRequestScheme",
        "tls_version": "ClientSSLProtocol",
        "request_id": "RayID",
    }
)
# Kong's file-log / http-log / tcp-log plugins (the "basic" serializer).
KONG = schema(
    {
        "time": "started_at",
        "client_ip": "client_ip",
        "method": "request.method",
        "target": "request.uri",
        "status": "response.status",
        "bytes_out": "response.size",
        "bytes_in": "request.size",
        "duration_ms": "latencies.request",
        "user": "consumer.username",
        "user_agent": "request.headers.user-agent",
        "referrer": "request.headers.referer",
        "host": "request.headers.host",
        "forwarded_for": "request.headers.x-forwarded-for",
        "request_id": ("request.id", "request.headers.x-request-id", "correlation_id"),
        "tls_version": "request.tls.version",
    }
)
ECS = schema(
    {
        "time": "@timestamp",
        "client_ip": ("source.ip", "client.ip", "source.address"),
        "client_port": ("source.port", "client.port"),
        "method": "http.request.method",
        "target": "url.original",
        "path": "url.path",
        "query": "url.query",
        "protocol": "http.version",
        "status": "http.response.status_code",
        "bytes_out": "http.response.body.bytes",
        "bytes_in": "http.request.body.bytes",
        "duration_ns": "event.duration",
        "user": "user.name",
        "user_agent": "user_agent.original",
        "referrer": "http.request.referrer",
        "host": ("url.domain", "destination.domain"),
        "server_port": ("url.port", "destination.port"),
        "scheme": "url.scheme",
        "tls_version": "tls.version",
        "request_id": "http.request.id",
        "forwarded_for": "network.forwarded_ip",
    }
)
# nginx `escape=json` formats and hand-rolled JSON loggers: the usual key spellings.
GENERIC = schema(
    {
        "time": ("time_local", "time_iso8601", "msec", "timestamp", "@timestamp", "time", "ts"),
        "client_ip": ("remote_addr", "client_ip", "clientip", "remote_ip", "ip", "src_ip"),
        "client_port": ("remote_port", "client_port"),
        "method": ("request_method", "method", "verb", "http_method"),
        "request": ("request",),
        "target": ("request_uri", "uri", "url"),
        "path": ("path",),
        "query": ("args", "query_string", "query"),
        "protocol": ("server_protocol", "protocol", "http_version"),
        "status": ("status", "status_code", "response_code", "response_status"),
        "bytes_out": ("body_bytes_sent", "bytes_sent", "response_size", "size", "bytes"),
        "bytes_in": ("request_length", "bytes_received", "request_size"),
        "duration_s": ("request_time",),
        "duration_ms": ("duration_ms", "response_time_ms", "latency_ms"),
        "user": ("remote_user", "user", "username", "user_name"),
        "user_agent": ("http_user_agent", "user_agent", "useragent", "agent"),
        "referrer": ("http_referer", "http_referrer", "referer", "referrer"),
        "host": ("host", "http_host", "server_name"),
        "server_port": ("server_port",),
        "scheme": ("scheme",),
        "https": ("https",),
        "tls_version": ("ssl_protocol", "tls_version", "tls_protocol"),
        "request_id": ("request_id", "http_x_request_id", "x_request_id", "requestId"),
        "forwarded_for": ("http_x_forwarded_for", "x_forwarded_for", "forwarded_for", "xff"),
        "forwarded_proto": ("http_x_forwarded_proto", "x_forwarded_proto"),
    }
)
SCHEMAS: dict[str, Schema] = {
    "traefik": TRAEFIK,
    "caddy": CADDY,
    "envoy": ENVOY,
    "cloudflare": CLOUDFLARE,
    "kong": KONG,
    "ecs": ECS,
    "generic": GENERIC,
}


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return _text(value[0]) if value else None
    return None


def _get(obj: dict[str, Any], lookup: Lookup) -> Any:
    if isinstance(lookup, str):
        return obj.get(lookup)
    cur: Any = obj
    for key in lookup:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
        if cur is None:
            return None
    return cur


Extractor = Callable[[dict[str, Any]], dict[str, str] | None]


def compile_schema(sch: Schema) -> Extractor:
    """A schema → one straight-line function (generated once): no per-key loops, no
    per-lookup calls, each top-level object fetched once. Same result as walking the
    schema with ``_get``/``_text``: raw fields, or ``None`` when the record has no time or
    nothing of a request (decided after the ``_FIRST`` keys, before the others).

    Keys and paths are written into the code with ``repr`` (they may come from a
    user's ``fields`` mapping), so they are only ever string literals.
    """
    body: list[str] = ["    get = obj.get", "    raw = {}"]
    prefixes: dict[str, str] = {}
    for _key, lookups in sch:
        for lookup in lookups:
            if isinstance(lookup, tuple) and lookup[0] not in prefixes:
                var = f"n{len(prefixes)}"
                prefixes[lookup[0]] = var
                body.append(f"    {var} = get({lookup[0]!r})")
    checked = False
    for key, lookups in sch:
        if not checked and key not in _FIRST:
            body.append("    if 'time' not in raw or len(raw) < 2:")
            body.append("        return None")
            checked = True
        body.append("    v = None")
        for lookup in lookups:
            body.append("    if v is None:")
            if isinstance(lookup, str):
                body.append(f"        v = get({lookup!r})")
                body.append("        if v is not None and (v.__class__ is not str):")
                body.append("            v = _text(v)")
                continue
            cur = prefixes[lookup[0]]
            indent = "        "
            for part in lookup[1:]:
                body.append(f"{indent}if {cur}.__class__ is dict:")
                indent += "    "
                body.append(f"{indent}c = {cur}.get({part!r})")
                cur = "c"
            body.append(f"{indent}v = c")
            body.append("        if v is not None and (v.__class__ is not str):")
            body.append("            v = _text(v)")
        body.append("    if v is not None:")
        body.append("        if v.__class__ is not str:")
        body.append("            v = _text(v)")
        body.append("        if v is not None:")
        body.append(f"            raw[{key!r}] = v")
    if not checked:
        body.append("    if 'time' not in raw or len(raw) < 2:")
        body.append("        return None")
    body.append("    return raw")
    code = "def extract(obj):\n" + "\n".join(body) + "\n"
    scope: dict[str, Any] = {"_text": _text}
    exec(compile(code, "<json schema>", "exec"), scope)  # noqa: S102 - literals only, see above
    extract: Extractor = scope["extract"]
    return extract


def _which(obj: dict[str, Any]) -> str:
    """The schema a record most likely follows, from telltale keys."""
    if isinstance(obj.get("request"), dict):
        return "kong" if "started_at" in obj else "caddy"
    if "RequestMethod" in obj or "ClientHost" in obj or "RequestPath" in obj:
        return "traefik"
    if "ClientRequestURI" in obj or "ClientRequestMethod" in obj:
        return "cloudflare"
    if "response_code" in obj or ":authority" in obj or "downstream_remote_address" in obj:
        return "envoy"
    if isinstance(obj.get("http"), dict) or isinstance(obj.get("url"), dict) or "url.path" in obj:
        return "ecs"
    return "generic"


def _caddy_fixups(obj: dict[str, Any], raw: dict[str, str]) -> bool:
    """Caddy: only ``http.log.access*`` records are requests; TLS shows as ``request.tls``."""
    logger = obj.get("logger")
    if isinstance(logger, str) and not logger.startswith("http.log.access"):
        return False
    request = obj.get("request")
    if not isinstance(request, dict):
        return False
    tls = request.get("tls")
    if isinstance(tls, dict):
        raw["scheme"] = "https"
        version = _text(tls.get("version"))
        if version:
            raw["tls_version"] = version
    elif "tls" not in request:
        raw["scheme"] = "http"  # Caddy logs request.tls for every TLS connection
    if raw.get("client_ip") == request.get("remote_ip"):
        port = _text(request.get("remote_port"))
        if port:
            raw["client_port"] = port
    return True


def _traefik_fixups(obj: dict[str, Any], raw: dict[str, str]) -> bool:
    status = raw.get("status")
    if status is not None and " " in status:  # DownstreamStatusLine "200 OK" (Traefik 1.x)
        raw["status"] = status.split(" ", 1)[0]
    host = raw.get("client_ip")
    if host and "," in host:  # several hops: keep the last (what the nearest proxy saw)
        ip = last_ip(host)
        if ip:
            raw["client_ip"] = ip
    return True


def _kong_fixups(obj: dict[str, Any], raw: dict[str, str]) -> bool:
    """Kong: scheme and host from ``request.url``; ``request.tls`` only on TLS."""
    request = obj.get("request")
    if not isinstance(request, dict):
        return False
    url = request.get("url")
    if isinstance(url, str):
        scheme, sep, rest = url.partition("://")
        if sep:
            raw["scheme"] = scheme
            if "host" not in raw:
                raw["host"] = rest.split("/", 1)[0]
    if isinstance(request.get("tls"), dict):
        raw["scheme"] = "https"
    return True


def _cloudflare_fixups(obj: dict[str, Any], raw: dict[str, str]) -> bool:
    """Cloudflare: "none" as SSL protocol means plain HTTP; duration from edge times."""
    if "scheme" not in raw:
        ssl = obj.get("ClientSSLProtocol")
        if isinstance(ssl, str) and ssl:
            raw["scheme"] = "http" if ssl.lower() == "none" else "https"
    start, end = obj.get("EdgeStartTimestamp"), obj.get("EdgeEndTimestamp")
    if isinstance(start, int) and isinstance(end, int) and end >= start:
        span = end - start  # same unit for both: ns, ms or s by magnitude of the start
        if start >= 10**17:
            unit = 1e-6  # ns
        elif start >= 10**14:
            unit = 1e-3  # µs
        else:
            unit = 1.0 if start >= 10**11 else 1000.0  # ms or s
        raw["duration_ms"] = repr(span * unit)
    return True


_FIXUPS: dict[str, Callable[[dict[str, Any], dict[str, str]], bool]] = {
    "caddy": _caddy_fixups,
    "traefik": _traefik_fixups,
    "kong": _kong_fixups,
    "cloudflare": _cloudflare_fixups,
}


def user_schema(fields: Mapping[str, str], where: str) -> Schema:
    """A user's ``fields`` (our field → their key) as a schema; unknown names are errors."""
    mapping: dict[str, str] = {}
    for ours, theirs in fields.items():
        key = EVENT_TO_RAW.get(ours, ours)
        if key not in RAW_KEYS:
            known = ", ".join(sorted(set(RAW_KEYS) | set(EVENT_TO_RAW)))
            raise ConfigError(f"{where}: unknown field {ours!r} in fields; known: {known}")
        if not isinstance(theirs, str) or not theirs:
            raise ConfigError(f"{where}: fields.{ours} must be a non-empty string")
        mapping[key] = theirs
    return schema(mapping)


def _merge(first: Schema, then: Schema) -> Schema:
    """Candidates of ``first`` before those of ``then``, key by key."""
    merged: dict[str, tuple[Lookup, ...]] = dict(then)
    for key, lookups in first:
        merged[key] = lookups + merged.get(key, ())
    return tuple(sorted(merged.items(), key=lambda kv: 0 if kv[0] in _FIRST else 1))


KIND_NAMES = {
    "caddy": "caddy",
    "traefik": "traefik-json",
    "cloudflare": "cloudflare",
    "envoy": "envoy",
    "kong": "kong-json",
    "ecs": "json",
    "generic": "json",
}


class JsonParser(DictParser):
    """JSON lines; ``kinds`` limits the schemas (``None``: pick one per line).

    With ``kind_names`` the event's format is named after the schema that matched
    (``caddy``, ``traefik-json``...): ``auto`` uses one such parser for every JSON
    flavour, so a line is parsed once, not once per flavour.
    """

    def __init__(
        self,
        name: str,
        kinds: tuple[str, ...] | None = None,
        user: Schema | None = None,
        kind_names: bool = False,
    ) -> None:
        self.name = name
        self.kinds = kinds
        self.kind_names = kind_names
        self.schemas = {k: _merge(user, s) if user else s for k, s in SCHEMAS.items()}
        self.extractors = {k: compile_schema(s) for k, s in self.schemas.items()}

    def record(self, text: str) -> tuple[str, dict[str, Any]] | None:
        if text[:1] != "{":
            return None
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        kinds = self.kinds
        if kinds is not None and len(kinds) == 1:
            return kinds[0], obj  # a named flavour: its schema, whatever keys are present
        kind = _which(obj)
        if kinds is not None and kind not in kinds:
            return None
        return kind, obj

    def parse(self, text: str) -> tuple[str, dict[str, str]] | None:
        """(format name for the event, raw fields), or ``None``."""
        rec = self.record(text)
        if rec is None:
            return None
        kind, obj = rec
        raw = self.extractors[kind](obj)  # None: no time, or no request: not an access record
        if raw is None:
            return None
        fix = _FIXUPS.get(kind)
        if fix is not None and not fix(obj, raw):
            return None
        return (KIND_NAMES[kind] if self.kind_names else self.name), raw

    def fields(self, text: str) -> dict[str, str] | None:
        parsed = self.parse(text)
        return None if parsed is None else parsed[1]

    def name_for(self, text: str) -> str | None:
        parsed = self.parse(text)
        return None if parsed is None else parsed[0]

    def bind(self, ctx: Ctx) -> BoundDecode:
        parse = self.parse

        def decode(text: str, line: Line) -> Event | None:
            parsed = parse(text)
            return None if parsed is None else build_event(parsed[1], ctx, line, parsed[0])

        return decode
