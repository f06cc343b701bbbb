"""JSON-lines access logs: Caddy, Traefik, Envoy, Cloudflare, Kong, ECS, nginx ``escape=json``.

A *schema* maps each canonical raw key to candidate JSON paths, tried in order. The
generic ``json`` format picks a schema per line from a few telltale keys, so one source
can carry any of them; a user's ``fields`` mapping is tried before the defaults.

Each schema is compiled twice, into straight-line code: ``compile_schema`` gives the raw
fields as a dict (``fields``, for ``explain`` and detection), ``compile_decoder`` the hot
path, which hands the same values to ``event.assemble`` without a dict in between. Each
schema gets one such decoder per record shape (``Shaped``: a logger writes the same keys in
the same order line after line), which takes the record's values in one unpacking and
looks up only the spellings the records have (the generic schema has seven spellings of a
time, six of a client address...).
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, TypeVar

import orjson

from auditor.errors import ConfigError
from auditor.formats.event import (
    DictParser,
    assemble,
    assemble_inline,
    assemble_row_inline,
    build_event,
    function_source,
)
from auditor.formats.spec import (
    EVENT_TO_RAW,
    RAW_KEYS,
    BoundDecode,
    Ctx,
    add_raw_form,
)
from auditor.model import Event, Line, Place
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
    cls = value.__class__  # orjson's exact types first, without isinstance
    if cls is str:
        return value  # type: ignore[no-any-return]
    if cls is int or cls is float:
        return repr(value)
    if cls is list:  # a header as a list of values (Caddy): its first
        if not value:
            return None
        first = value[0]
        return first if first.__class__ is str else _text(first)
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
        for i, lookup in enumerate(lookups):
            indent = _candidate(body, i, "v")
            if isinstance(lookup, str):
                body.append(f"{indent}v = get({lookup!r})")
            else:
                body.append(f"{indent}v = None")
                cur, inner = prefixes[lookup[0]], indent
                for part in lookup[1:]:
                    body.append(f"{inner}if {cur}.__class__ is dict:")
                    inner += "    "
                    body.append(f"{inner}c = {cur}.get({part!r})")
                    cur = "c"
                body.append(f"{inner}v = c")
            # what _text does, with its common cases inline
            body.append(f"{indent}if v is not None and v.__class__ is not str:")
            body.append(f"{indent}    if v.__class__ is int or v.__class__ is float:")
            body.append(f"{indent}        v = repr(v)")
            body.append(f"{indent}    else:")
            body.append(f"{indent}        v = _text(v)")
        body.append("    if v is not None:")
        body.append(f"        raw[{key!r}] = v")
    if not checked:
        body.append("    if 'time' not in raw or len(raw) < 2:")
        body.append("        return None")
    body.append("    return raw")
    code = "def extract(obj):\n" + "\n".join(body) + "\n"
    scope: dict[str, Any] = {"_text": _text}
    exec(compile(code, "<json schema>", "exec"), scope)  # noqa: S102 - literals only, see above
    extract: Extractor = scope["extract"]
    return extract


# Raw keys whose JSON integers (``_INTS``) or numbers (``_NUMBERS``) go to ``assemble`` as
# they are (it reads them as ``to_int``/``to_float``/``parse_time`` would read their text),
# unless a fixup reads them as text.
_INTS = frozenset(("client_port", "status", "bytes_in", "bytes_out", "server_port"))
_NUMBERS = frozenset(("time", "duration_s", "duration_ms", "duration_us", "duration_ns"))
JsonDecode = Callable[[dict[str, Any], Ctx, Place, str], Event | None]
JsonRowDecode = Callable[[dict[str, Any], Ctx, Place, str], list[Any] | None]


def _lookup_code(
    sch: Schema,
    ints: frozenset[str],
    numbers: frozenset[str],
    dotted: frozenset[str],
    shape: tuple[str, ...] | None = None,
    prefix: str = "k_",
    top: dict[str, str] | None = None,
    also: frozenset[str] = frozenset(),
) -> list[str]:
    """Code that sets ``<prefix><key>`` for each key of ``sch`` as ``compile_schema`` sets
    ``raw[key]`` (``None`` when absent), and returns ``None`` when the record has no time
    or nothing of a request. Nested objects are fetched once each, into ``d<n>`` (an empty
    dict when missing or not an object), before the keys.

    With ``shape`` (the top-level keys of the records the code is for, in order), the code
    takes the values in one unpacking of ``obj.values()`` instead of a lookup per key, and
    leaves out the lookups of the other top-level keys: each would give ``None``. Then
    ``top`` gets each top-level key's local (``also``: further keys to unpack, those a
    fixup reads)."""
    head: list[str] = []
    unpacked = {} if shape is None else _unpack(sch, shape, head, also)
    if top is not None:
        top.update(unpacked)
    top = unpacked
    objects = _nested_objects(sch, head, top, shape is not None)
    if dotted and shape is None:  # a flat "a.b" key is looked up only in records that have one
        head.append("    flat = not dotted.isdisjoint(obj)")
    body: list[str] = []
    checked = False
    first_seen: list[str] = []
    for key, lookups in sch:
        if not checked and key not in _FIRST:
            body += _request_check(first_seen, prefix)
            checked = True
        if key in _FIRST:
            first_seen.append(key)
        var = prefix + key
        # not text (nor a number passed on as it is): _text makes it text, or None
        # ``.__class__ is`` tests, the value's usual type first, cost less than a call
        # of ``type`` and a tuple's ``in``
        not_text = "{0}.__class__ is not str"
        if key in numbers:
            not_text = (
                "{0}.__class__ is not str and {0}.__class__ is not float"
                " and {0}.__class__ is not int"
            )
        elif key in ints:
            not_text = "{0}.__class__ is not int and {0}.__class__ is not str"
        not_text = not_text.format(var)
        if shape is not None:
            lookups = tuple(lk for lk in lookups if not isinstance(lk, str) or lk in top)
            if not lookups:
                body.append(f"    {var} = None")
        for i, lookup in enumerate(lookups):
            indent = _candidate(body, i, var)
            if isinstance(lookup, str):
                if shape is not None:
                    get = top[lookup]
                else:
                    get = f"obj.get({lookup!r})"
                    if lookup in dotted:
                        get += " if flat else None"
            else:
                get = f"{objects[lookup[:-1]]}.get({lookup[-1]!r})"
            body.append(f"{indent}{var} = {get}")
            body.append(f"{indent}if {not_text} and {var} is not None:")
            # _text, with a header logged as a list of texts (Caddy) inline: its first
            body.append(
                f"{indent}    if {var}.__class__ is list and {var} and {var}[0].__class__ is str:"
            )
            body.append(f"{indent}        {var} = {var}[0]")
            body.append(f"{indent}    else:")
            body.append(f"{indent}        {var} = _text({var})")
    if not checked:
        body += _request_check(first_seen, prefix)
    return head + body


def _unpack(
    sch: Schema, shape: tuple[str, ...], head: list[str], also: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Appends to ``head`` the unpacking of a record of this shape's values into locals
    (``o<i>``; ``_`` for keys neither a lookup of ``sch`` nor ``also`` reads); returns
    key -> local."""
    used = {lk if isinstance(lk, str) else lk[0] for _k, lks in sch for lk in lks} | also
    names = [f"o{i}" if key in used else "_" for i, key in enumerate(shape)]
    if shape:
        head.append(f"    {', '.join(names)}, = obj.values()")
    return {key: name for key, name in zip(shape, names, strict=True) if name != "_"}


def _candidate(body: list[str], i: int, var: str) -> str:
    """The indent of a key's lookup ``i`` in generated code: a lookup after the first runs
    only when no text came of the ones before (``var`` is still ``None``)."""
    if not i:
        return "    "
    body.append(f"    if {var} is None:")
    return "        "


def _nested_objects(
    sch: Schema, head: list[str], top: dict[str, str], shaped: bool
) -> dict[tuple[str, ...], str]:
    """Variable names for the nested objects the paths of ``sch`` go through; appends to
    ``head`` the code that fetches each one once (``_EMPTY`` when missing or not an
    object). ``shaped``: the top-level values are the locals named in ``top`` (a key not
    there is absent)."""
    objects: dict[tuple[str, ...], str] = {}
    for _key, lookups in sch:
        for lookup in lookups:
            if isinstance(lookup, str):
                continue
            for depth in range(1, len(lookup)):
                prefix = lookup[:depth]
                if prefix not in objects:
                    var = objects[prefix] = f"d{len(objects)}"
                    if depth == 1 and shaped:
                        if prefix[0] not in top:
                            head.append(f"    {var} = _EMPTY")
                            continue
                        head.append(f"    {var} = {top[prefix[0]]}")
                    else:
                        parent = "obj" if depth == 1 else objects[prefix[:-1]]
                        head.append(f"    {var} = {parent}.get({prefix[-1]!r})")
                    head.append(f"    if {var}.__class__ is not dict:")
                    head.append(f"        {var} = _EMPTY")
    return objects


def _request_check(first_seen: list[str], prefix: str) -> list[str]:
    """``compile_schema``'s ``'time' not in raw or len(raw) < 2`` on the locals."""
    others = " and ".join(f"{prefix}{k} is None" for k in first_seen if k != "time") or "True"
    return [f"    if {prefix}time is None or ({others}):", "        return None"]


def compile_decoder(sch: Schema, kind: str, shape: tuple[str, ...] | None = None) -> JsonDecode:
    """A schema (and its kind's fixup) → one generated ``decode(obj, ctx, line, name)``:
    the raw fields of ``compile_schema`` held in locals, and ``assemble``'s body written
    out after them (``assemble_inline``; a call of ``assemble`` when its source is not at
    hand), so no raw-field dict is built and read back, nor 32 arguments passed. Same
    event as ``build_event`` on ``extract(obj)`` after the fixup. Keys and paths are
    written into the code with ``repr``, as in ``compile_schema``.
    """
    keys = {key for key, _ in sch}
    if not keys <= set(RAW_KEYS) or "time" not in keys:
        return _decoder_via_dict(sch, kind)
    inline = assemble_inline() if INLINE_ASSEMBLE else None
    if inline is not None and inline[0] != tuple(RAW_KEYS):
        inline = None  # assemble's parameters are not the raw keys: call it
    decode: JsonDecode = _generate(sch, kind, shape, inline)
    return decode


def compile_row_decoder(
    sch: Schema, kind: str, shape: tuple[str, ...] | None = None
) -> JsonRowDecode | None:
    """``compile_decoder``'s decoder with ``assemble_row_inline``'s body: the event's fields
    as a list (see ``RawDecode``), not an ``Event``. ``None`` where ``compile_decoder``
    would not write ``assemble``'s body out."""
    keys = {key for key, _ in sch}
    if not keys <= set(RAW_KEYS) or "time" not in keys or not INLINE_ASSEMBLE:
        return None
    inline = assemble_row_inline()
    if inline is None or inline[0] != tuple(RAW_KEYS):
        return None
    decode: JsonRowDecode = _generate(sch, kind, shape, inline)
    return decode


def _generate(
    sch: Schema,
    kind: str,
    shape: tuple[str, ...] | None,
    inline: tuple[tuple[str, ...], str, dict[str, Any]] | None,
) -> Any:
    """``compile_decoder``'s code generation, with ``inline`` as the body after the
    lookups (None: a call of ``assemble``)."""
    keys = {key for key, _ in sch}
    fix, fix_keys = _FIX.get(kind, (None, ()))
    prefix = "" if inline is not None else "k_"  # inline: the locals are its parameters
    dotted = frozenset(lk for _k, lks in sch for lk in lks if isinstance(lk, str) and "." in lk)
    as_text = set(fix_keys) - _FIX_INTS.get(kind, frozenset())
    top: dict[str, str] = {}
    fix_reads = _fix_reads(fix, fix_keys) if fix is not None and INLINE_FIX else frozenset()
    body = _lookup_code(
        sch, _INTS - as_text, _NUMBERS - as_text, dotted, shape, prefix, top, fix_reads
    )
    scope: dict[str, Any] = {}
    if inline is not None:
        scope.update(inline[2])  # the globals assemble's body reads
    scope.update(
        _text=_text,
        _EMPTY=_EMPTY,
        fix=fix,
        assemble=assemble,
        dotted=dotted,
    )
    if fix is not None:
        for key in fix_keys:
            if key not in keys:
                body.append(f"    {prefix}{key} = None")
        shaped = top if shape is not None else None
        fix_body = _inline_fix(fix, fix_keys, prefix, scope, shaped) if INLINE_FIX else None
        if fix_body is not None:
            body += fix_body
        else:
            names = ", ".join(prefix + k for k in fix_keys)
            body.append(f"    fixed = fix(obj, {names})")
            body.append("    if fixed is None:")
            body.append("        return None")
            body.append(f"    {names}, = fixed")
    have = keys | set(fix_keys)
    if inline is not None:
        body += [f"    {k} = None" for k in RAW_KEYS if k not in have]
        body.append(inline[1])
    else:
        args = ", ".join(f"k_{k}" if k in have else "None" for k in RAW_KEYS)
        body.append(f"    return assemble(ctx, line, name, {args})")
    code = "def decode(obj, ctx, line, name):\n" + "\n".join(body) + "\n"
    exec(compile(code, f"<json decoder {kind}>", "exec"), scope)  # noqa: S102 - literals only
    return scope["decode"]


# Generated decoders write assemble's body out (``assemble_inline``); False: they call it
# (tests compare both ways).
INLINE_ASSEMBLE = True
# Generated decoders write their kind's fixup out (``_inline_fix``); False: they call it.
INLINE_FIX = True


def _inline_fix(
    fix: Fix,
    keys: tuple[str, ...],
    prefix: str,
    scope: dict[str, Any],
    shaped: Mapping[str, str] | None = None,
) -> list[str] | None:
    """The body of a fixup (``_FIX``) as lines of a generated decoder, which holds its
    values in the locals ``<prefix><key>``: its parameters are those locals, its own locals
    are renamed ``_fx_<name>``, a ``return None`` (not a request) returns from the decoder,
    and its last statement, which must return its parameters in order, is left out. Adds
    the globals it reads to ``scope``. ``None`` (call it instead) when its source is not
    at hand, it returns anything else, or a global it reads is another object in
    ``scope``. A call cost about a fifth of what the fixup does (values packed into a
    tuple, unpacked again).

    ``shaped``: the decoder is for one record shape, whose top-level values are these
    locals (key -> local): each ``obj.get('key')`` of the fixup reads its local instead,
    or ``None`` for a key the shape has not (what the lookup gives on such a record)."""
    body = _fix_statements(fix, keys)
    if body is None:
        return None
    if shaped is not None:
        body = [_ShapedGets(shaped).visit(stmt) for stmt in body]
    stored = {
        n.id
        for stmt in body
        for n in ast.walk(stmt)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    renames = {k: prefix + k for k in keys}
    renames.update({n: "_fx_" + n for n in stored if n not in renames and n != "obj"})
    globals_read: dict[str, Any] = {}
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name):
                if node.id in renames:
                    node.id = renames[node.id]
                elif node.id != "obj" and node.id in fix.__globals__:
                    globals_read[node.id] = fix.__globals__[node.id]
    if any(name in scope and scope[name] is not v for name, v in globals_read.items()):
        return None
    scope.update(globals_read)
    return ["    " + ln for stmt in body for ln in ast.unparse(stmt).splitlines()]


def _obj_get_key(node: ast.AST) -> str | None:
    """The key of an ``obj.get('key')`` call (a text literal, one argument), else None."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "obj"
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def _fix_reads(fix: Fix, keys: tuple[str, ...]) -> frozenset[str]:
    """The top-level keys a fixup reads with ``obj.get('key')``."""
    body = _fix_statements(fix, keys) or []
    found = (_obj_get_key(n) for stmt in body for n in ast.walk(stmt))
    return frozenset(k for k in found if k is not None)


class _ShapedGets(ast.NodeTransformer):
    """``obj.get('key')`` -> the local holding that key's value (``None`` if absent)."""

    def __init__(self, shaped: Mapping[str, str]) -> None:
        self.shaped = shaped

    def visit_Call(self, node: ast.Call) -> ast.AST:
        key = _obj_get_key(node)
        if key is None:
            return self.generic_visit(node)
        local = self.shaped.get(key)
        return ast.Constant(None) if local is None else ast.Name(local, ast.Load())


@cache
def _fix_source(fix: Fix) -> ast.FunctionDef | None:
    """The syntax tree of a fixup, read back from its module's source (as
    ``assemble_inline`` reads ``assemble``), once per process; ``None`` when not at hand
    or not the code that runs."""
    code = getattr(fix, "__code__", None)
    return None if code is None else function_source(code)


def _fix_statements(fix: Fix, keys: tuple[str, ...]) -> list[ast.stmt] | None:
    """The statements of ``fix`` (``fix(obj, *keys)``) before its last, ``return`` of its
    parameters in order; ``None`` if it is not of that form, returns anything but ``None``
    before, or holds a scope of its own (a lambda, a comprehension...)."""
    fn = _fix_source(fix)
    if fn is None or [a.arg for a in fn.args.args] != ["obj", *keys]:
        return None
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    last = body[-1] if body else None
    if not (
        isinstance(last, ast.Return)
        and isinstance(last.value, ast.Tuple)
        and [getattr(n, "id", None) for n in last.value.elts] == list(keys)
    ):
        return None
    scoped = (ast.Lambda, ast.FunctionDef, ast.ClassDef, ast.comprehension)
    for node in (n for stmt in body[:-1] for n in ast.walk(stmt)):
        if isinstance(node, scoped):
            return None
        if isinstance(node, ast.Return) and not (
            node.value is None
            or (isinstance(node.value, ast.Constant) and node.value.value is None)
        ):
            return None
    return copy.deepcopy(body[:-1])  # renamed by the caller: the cached tree stays as read


_MAX_SHAPES = 32  # then the plain decoder: a source of ever new key sets costs no more


def decoder_for(sch: Schema, kind: str) -> JsonDecode:
    """The generated decoder of ``sch``, per record shape (``Shaped``) unless the schema has
    keys of its own (the dict way: nothing to specialise)."""
    keys = {key for key, _ in sch}
    if not keys <= set(RAW_KEYS) or "time" not in keys:
        return compile_decoder(sch, kind)
    return Shaped(sch, kind)


class Shaped:
    """``compile_decoder(sch, kind)``, specialised per record shape (its top-level keys in
    order, as a logger writes them line after line): the code for one shape takes the
    values in one unpacking and looks up only the spellings present. Same event for
    every record; past ``_MAX_SHAPES`` shapes, new ones go to the plain decoder (compiled
    then: about 7 ms of each process's start that a source of a few shapes never needs)."""

    __slots__ = ("kind", "plain", "plain_rows", "row_shapes", "sch", "shapes")

    def __init__(self, sch: Schema, kind: str) -> None:
        self.sch = sch
        self.kind = kind
        self.plain: JsonDecode | None = None
        self.shapes: dict[tuple[str, ...], JsonDecode] = {}
        # The same per shape, giving the fields (``compile_row_decoder``)
        self.plain_rows: JsonRowDecode | None = None
        self.row_shapes: dict[tuple[str, ...], JsonRowDecode] = {}

    def has_rows(self) -> bool:
        """Whether ``rows_for_shape`` gives decoders (``compile_row_decoder`` can)."""
        return INLINE_ASSEMBLE and assemble_row_inline() is not None

    def rows_for_shape(self, shape: tuple[str, ...]) -> JsonRowDecode:
        """``for_shape``'s decoder, giving the fields (call only if ``has_rows``)."""
        if len(self.row_shapes) >= _MAX_SHAPES:
            if self.plain_rows is None:
                self.plain_rows = _must(compile_row_decoder(self.sch, self.kind))
            return self.plain_rows
        dec = self.row_shapes[shape] = _must(compile_row_decoder(self.sch, self.kind, shape))
        return dec

    def for_shape(self, shape: tuple[str, ...]) -> JsonDecode:
        """The decoder of records of this shape (``shapes`` has no entry for it yet)."""
        if len(self.shapes) >= _MAX_SHAPES:
            if self.plain is None:
                self.plain = compile_decoder(self.sch, self.kind)
            return self.plain
        dec = self.shapes[shape] = compile_decoder(self.sch, self.kind, shape)
        return dec

    def __call__(self, obj: dict[str, Any], ctx: Ctx, line: Place, name: str) -> Event | None:
        shape = tuple(obj)
        dec = self.shapes.get(shape)
        if dec is None:
            dec = self.for_shape(shape)
        return dec(obj, ctx, line, name)


def _must(dec: JsonRowDecode | None) -> JsonRowDecode:
    if dec is None:
        raise RuntimeError("no row decoder (Shaped.has_rows said there would be)")
    return dec


def _decoder_via_dict(sch: Schema, kind: str) -> JsonDecode:
    """The plain way (extract, fix, ``build_event``), for schemas with keys of their own."""
    extract = compile_schema(sch)
    fixup = _FIXUPS.get(kind)

    def decode(obj: dict[str, Any], ctx: Ctx, line: Place, name: str) -> Event | None:
        raw = extract(obj)
        if raw is None or (fixup is not None and not fixup(obj, raw)):
            return None
        return build_event(raw, ctx, line, name)

    return decode


_EMPTY: dict[str, Any] = {}  # stands for a missing nested object; never written to
_V = TypeVar("_V")


class _Compiled(dict[str, _V]):
    """Generated functions by schema kind, each compiled when first asked for: a parser
    of one flavour (and ``auto``'s detectors, built at import) compiles only what it uses,
    not all seven schemas twice (about 40 ms of every process start)."""

    def __init__(self, make: Callable[[str], _V]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, kind: str) -> _V:
        value = self[kind] = self._make(kind)
        return value


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


# Each fixup reads and may rewrite a few raw fields, given and returned as a tuple in the
# order of its ``_FIX_KEYS`` entry (``None``: absent); ``None`` instead of the tuple means
# the record is not a request. The generated decoders call them on local values, and
# ``_FIXUPS`` (raw-field dicts, for ``fields``) goes through the same functions.
Values = tuple[Any, ...]


def _caddy_fix(
    obj: dict[str, Any], scheme: Any, tls_version: Any, client_port: Any, client_ip: Any
) -> Values | None:
    """Caddy: only ``http.log.access*`` records are requests; TLS shows as ``request.tls``."""
    logger = obj.get("logger")
    if isinstance(logger, str) and not logger.startswith("http.log.access"):
        return None
    request = obj.get("request")
    if not isinstance(request, dict):
        return None
    tls = request.get("tls")
    if isinstance(tls, dict):
        scheme = "https"
        version = tls.get("version")  # _text of it, the usual cases inline
        if version.__class__ is not str:
            version = repr(version) if version.__class__ is int else _text(version)
        if version:
            tls_version = version
    elif "tls" not in request:
        scheme = "http"  # Caddy logs request.tls for every TLS connection
    if client_ip == request.get("remote_ip"):
        port = request.get("remote_port")
        if port.__class__ is not str:
            port = _text(port)
        if port:
            client_port = port
    return scheme, tls_version, client_port, client_ip


def _traefik_fix(obj: dict[str, Any], status: Any, client_ip: Any) -> Values | None:
    """Traefik: ``status`` is text, or a JSON integer as it is (see ``_FIX_INTS``)."""
    if status.__class__ is str and " " in status:  # DownstreamStatusLine "200 OK" (1.x)
        status = status.split(" ", 1)[0]
    if client_ip and "," in client_ip:  # several hops: keep the last (the nearest proxy's)
        ip = last_ip(client_ip)
        if ip:
            client_ip = ip
    return status, client_ip


def _kong_fix(obj: dict[str, Any], scheme: Any, host: Any) -> Values | None:
    """Kong: scheme and host from ``request.url``; ``request.tls`` only on TLS."""
    request = obj.get("request")
    if not isinstance(request, dict):
        return None
    url = request.get("url")
    if isinstance(url, str):
        url_scheme, sep, rest = url.partition("://")
        if sep:
            scheme = url_scheme
            if host is None:
                host = rest.split("/", 1)[0]
    if isinstance(request.get("tls"), dict):
        scheme = "https"
    return scheme, host


def _cloudflare_fix(obj: dict[str, Any], scheme: Any, duration_ms: Any) -> Values | None:
    """Cloudflare: "none" as SSL protocol means plain HTTP; duration from edge times."""
    if scheme is None:
        ssl = obj.get("ClientSSLProtocol")
        if isinstance(ssl, str) and ssl:
            scheme = "http" if ssl.lower() == "none" else "https"
    start, end = obj.get("EdgeStartTimestamp"), obj.get("EdgeEndTimestamp")
    if isinstance(start, int) and isinstance(end, int) and end >= start:
        span = end - start  # same unit for both: ns, ms or s by magnitude of the start
        if start >= 10**17:
            unit = 1e-6  # ns
        elif start >= 10**14:
            unit = 1e-3  # µs
        else:
            unit = 1.0 if start >= 10**11 else 1000.0  # ms or s
        duration_ms = span * unit  # a float: assemble reads it as to_float(repr(...)) would
    return scheme, duration_ms


Fix = Callable[..., Values | None]
# Keys of a fix's values that may be JSON integers as they are, like ``_INTS`` (the fix reads
# them either way); other keys of a fix come to it as text.
_FIX_INTS: dict[str, frozenset[str]] = {"traefik": frozenset(("status",))}
_FIX: dict[str, tuple[Fix, tuple[str, ...]]] = {
    "caddy": (_caddy_fix, ("scheme", "tls_version", "client_port", "client_ip")),
    "traefik": (_traefik_fix, ("status", "client_ip")),
    "kong": (_kong_fix, ("scheme", "host")),
    "cloudflare": (_cloudflare_fix, ("scheme", "duration_ms")),
}


def _dict_fixup(
    fix: Fix, keys: tuple[str, ...]
) -> Callable[[dict[str, Any], dict[str, str]], bool]:
    """``fix`` applied to a raw-field dict (keys it sets are added in ``keys`` order)."""

    def apply(obj: dict[str, Any], raw: dict[str, str]) -> bool:
        values = fix(obj, *(raw.get(k) for k in keys))
        if values is None:
            return False
        for key, value in zip(keys, values, strict=True):
            if value is not None:
                text = value if value.__class__ is str else _text(value)  # a fix's number
                if text is not None and raw.get(key) != text:
                    raw[key] = text
        return True

    return apply


_FIXUPS: dict[str, Callable[[dict[str, Any], dict[str, str]], bool]] = {
    kind: _dict_fixup(fix, keys) for kind, (fix, keys) in _FIX.items()
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
        self.schemas = schemas = {k: _merge(user, s) if user else s for k, s in SCHEMAS.items()}
        self.extractors: _Compiled[Extractor] = _Compiled(lambda k: compile_schema(schemas[k]))

    def parse(self, text: str) -> tuple[str, dict[str, str]] | None:
        """(format name for the event, raw fields), or ``None``."""
        raw = self.raw(text)
        if raw is None:
            return None
        return (KIND_NAMES[raw[0]] if self.kind_names else self.name), raw[1]

    def raw(self, text: str) -> tuple[str, dict[str, str]] | None:
        """(schema kind, raw fields), or ``None``: ``record`` and the schema in one call."""
        obj = _json_object(text)
        if obj is None:
            return None
        kinds = self.kinds
        if kinds is not None and len(kinds) == 1:
            kind = kinds[0]  # a named flavour: its schema, whatever keys are present
        else:
            kind = _which(obj)
            if kinds is not None and kind not in kinds:
                return None
        raw = self.extractors[kind](obj)  # None: no time, or no request: not an access record
        if raw is None:
            return None
        fix = _FIXUPS.get(kind)
        if fix is not None and not fix(obj, raw):
            return None
        return kind, raw

    def fields(self, text: str) -> dict[str, str] | None:
        parsed = self.parse(text)
        return None if parsed is None else parsed[1]

    def name_for(self, text: str) -> str | None:
        parsed = self.parse(text)
        return None if parsed is None else parsed[0]

    def bind(self, ctx: Ctx, otherwise: BoundDecode | None = None) -> BoundDecode:
        """``otherwise``: the decoder of lines that do not open with '{' (none: such a
        line is no event); only a parser of one schema takes it (see ``_TextOrJson``)."""
        kinds = self.kinds
        only = kinds[0] if kinds is not None and len(kinds) == 1 else None
        schemas = self.schemas
        decoders: _Compiled[JsonDecode] = _Compiled(lambda k: decoder_for(schemas[k], k))
        names = {k: (KIND_NAMES[k] if self.kind_names else self.name) for k in schemas}
        if only is not None:
            return _bind_one(decoders[only], ctx, names[only], otherwise)
        if otherwise is not None:
            raise ValueError("only a parser of one schema decodes other lines too")

        def decode(text: str, line: Line) -> Event | None:
            # ``raw`` and ``build_event`` in one: the schema's generated decoder
            obj = _json_object(text)
            if obj is None:
                return None
            kind = _which(obj)
            if kinds is not None and kind not in kinds:
                return None
            return decoders[kind](obj, ctx, line, names[kind])

        return decode


def _bind_one(
    decoder: JsonDecode, ctx: Ctx, name: str, otherwise: BoundDecode | None = None
) -> BoundDecode:
    """``JsonParser.bind`` for a parser of one schema: no per-line choice of decoder, and
    the record's shape looked up here (one call less per line); a line that does not open
    with '{' goes to ``otherwise`` (one call less than a decoder choosing between both)."""
    if not isinstance(decoder, Shaped):

        def decode_plain(text: str, line: Line) -> Event | None:
            if otherwise is not None and text[:1] != "{":
                return otherwise(text, line)
            obj = _json_object(text)
            return None if obj is None else decoder(obj, ctx, line, name)

        return decode_plain
    return _bind_shaped(decoder, ctx, name, otherwise)


def _bind_shaped(
    decoder: Shaped, ctx: Ctx, name: str, otherwise: BoundDecode | None
) -> BoundDecode:
    """``_bind_one`` of a ``Shaped`` decoder, with its bytes form (``RawDecode``)."""
    parsed = _by_shape(decoder.shapes.get, decoder.for_shape, ctx, name, braced=False)

    def decode(text: str, line: Line) -> Event | None:
        if text[:1] != "{":  # what _json_object does, inline
            return None if otherwise is None else otherwise(text, line)
        return parsed(text, line)

    if decoder.has_rows():
        # ``decode`` of the line's bytes, giving the event's fields: orjson reads them as
        # they are (no text made of them), and rejects what is not UTF-8 (the usual way
        # then decodes the line with replacement characters, as the line splitter does)
        rows = _by_shape(decoder.row_shapes.get, decoder.rows_for_shape, ctx, name, braced=True)
        add_raw_form(decode, rows)
    return decode


_R = TypeVar("_R")


def _by_shape(
    shapes_get: Callable[[tuple[str, ...]], Callable[[dict[str, Any], Ctx, Place, str], _R] | None],
    for_shape: Callable[[tuple[str, ...]], Callable[[dict[str, Any], Ctx, Place, str], _R]],
    ctx: Ctx,
    name: str,
    *,
    braced: bool,
) -> Callable[[str | bytes, Place], _R | None]:
    """A line's JSON record decoded by the decoder of its shape; ``braced``: only a line
    that starts with '{' (the caller checks otherwise)."""
    # The last record's shape and its decoder: a logger writes one shape line after line,
    # and comparing with it costs less than hashing the shape for the lookup (the keys are
    # the same objects from line to line: orjson keeps them, so each compares by identity)
    last_shape: tuple[str, ...] = ()
    last_dec: Callable[[dict[str, Any], Ctx, Place, str], _R] | None = None

    def parsed(data: str | bytes, place: Place) -> _R | None:
        nonlocal last_shape, last_dec
        if braced and data[:1] != b"{":
            return None
        try:
            obj = _loads(data)
        except _JSONDecodeError:
            return None
        if obj.__class__ is not dict:
            return None
        shape = tuple(obj)
        if shape == last_shape and last_dec is not None:
            return last_dec(obj, ctx, place, name)
        dec = shapes_get(shape)
        if dec is None:
            dec = for_shape(shape)
        last_shape, last_dec = shape, dec
        return dec(obj, ctx, place, name)

    return parsed


_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


def _json_object(text: str) -> dict[str, Any] | None:
    """The JSON object a line holds, or None (not JSON, or JSON but not an object)."""
    if text[:1] != "{":
        return None
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return obj if obj.__class__ is dict else None
