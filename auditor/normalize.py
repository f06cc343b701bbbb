"""Small pure helpers that turn logged strings into normalized event values.

Every log format ends up here: request lines, request targets, addresses, TLS versions,
routes. They never raise on odd input (a bad line is normal input) and they are cheap,
because they run once or more per line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol, cast

from auditor.model import Exposure


class RedactorLike(Protocol):
    """What the decoders need of ``auditor.redact.Redactor``.

    Decoders call it for every value that can carry PII or a secret, so that an
    ``Event`` only ever holds redacted text.
    """

    def redact_target(
        self, path: str, query: str | None
    ) -> tuple[str, str | None, tuple[Exposure, ...]]: ...

    def redact_url(self, url: str, location: str) -> tuple[str, tuple[Exposure, ...]]: ...

    def redact_text(self, text: str) -> str: ...

    def redact_user(self, name: str) -> str: ...


class PassThroughRedactor:
    """Redacts nothing: for tests, benchmarks and measuring the decoder alone."""

    def redact_target(
        self, path: str, query: str | None
    ) -> tuple[str, str | None, tuple[Exposure, ...]]:
        return path, query, ()

    def redact_url(self, url: str, location: str) -> tuple[str, tuple[Exposure, ...]]:
        return url, ()

    def redact_text(self, text: str) -> str:
        return text

    def redact_user(self, name: str) -> str:
        return name


# --- routes -------------------------------------------------------------------------------

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]{16,}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,}")
_PREFIXED = re.compile(r"[a-z]{2,8}_[A-Za-z0-9]{8,}")
ID = "{id}"
_HAS_DIGIT = re.compile(r"\d").search
_HAS_UPPER = re.compile(r"[A-Z]").search
_HAS_LOWER = re.compile(r"[a-z]").search


def _is_id(seg: str) -> bool:
    """True for path segments that are identifiers rather than resource names."""
    if seg.isdigit():
        return seg.isascii()
    n = len(seg)
    if n == 36 and _UUID.fullmatch(seg):
        return True
    if n >= 16:
        if _HEX.fullmatch(seg):
            return _HAS_DIGIT(seg) is not None
        if _TOKEN.fullmatch(seg):
            # Random-looking tokens (ACME, nanoid, base64url) mix cases and digits;
            # slugs ("my-long-product-name") do not.
            return (
                _HAS_DIGIT(seg) is not None
                and _HAS_UPPER(seg) is not None
                and _HAS_LOWER(seg) is not None
            )
    if n >= 11 and "_" in seg and _PREFIXED.fullmatch(seg):  # cus_N1a2b3c4d5, ord_...
        return _HAS_DIGIT(seg) is not None
    return False


def _template_segment(seg: str) -> str:
    if _is_id(seg):
        return ID
    if "." in seg:  # app.12345.js, 9f1c...e2.png
        parts = seg.split(".")
        changed = False
        for i, part in enumerate(parts):
            if (len(part) >= 4 and part.isdigit() and part.isascii()) or (
                len(part) >= 16 and _is_id(part)
            ):
                parts[i] = ID
                changed = True
        if changed:
            return ".".join(parts)
    return seg


_SHORT_SEGMENTS = re.compile(r"(?:/[A-Za-z0-9_~-]{0,10})*").fullmatch
_NUMERIC_SEGMENT = re.compile(r"/[0-9]+(?=/|$)")


ROUTE_CACHE: dict[str, str] = {}
"""Memo of ``route_template`` (bounded; cleared when full). Hot decoders bind its ``get``."""
_ROUTE_CACHE_MAX = 16384
# One object per distinct route (bounded like the memo): paths with ids are mostly new,
# but their routes are few, and a shared object is pickled once per decoded chunk (a
# decode worker sends the route of every event: 17 kB a chunk of 1,300 bench lines
# instead of 3 kB, 0.12 us a line more to send, receive and free), and hashed once.
_ROUTES: dict[str, str] = {}


def _route_template(path: str) -> str:
    """Uncached ``route_template``."""
    if path[:1] != "/":
        if path == "*" or not path:
            return path
        return "{other}"
    if _SHORT_SEGMENTS(path) is not None:  # only short plain segments: numbers are the ids
        return _NUMERIC_SEGMENT.sub("/" + ID, path)
    if _HAS_DIGIT(path) is None:
        return path
    segs = path.split("/")
    for i, seg in enumerate(segs):
        if seg.isdigit():
            if seg.isascii():
                segs[i] = ID
        elif len(seg) >= 11 or "." in seg:  # shorter segments cannot be ids (see _is_id)
            segs[i] = _template_segment(seg)
    return "/".join(segs)


def route_template(path: str) -> str:
    """``/users/42/orders/9f1c...`` → ``/users/{id}/orders/{id}``.

    Routes group requests for rate and enumeration detectors, so id-like segments (numbers,
    UUIDs, long hex, random tokens) collapse to ``{id}``. Anything that is not an
    origin-form path (garbage sent by scanners, ``CONNECT host:443``) becomes ``{other}``
    so it cannot blow up route cardinality; ``*`` stays ``*``.
    """
    route = ROUTE_CACHE.get(path)
    if route is None:
        made = _route_template(path)
        route = _ROUTES.get(made)
        if route is None:
            if len(_ROUTES) >= _ROUTE_CACHE_MAX:
                _ROUTES.clear()
            route = _ROUTES[made] = made
        if len(ROUTE_CACHE) >= _ROUTE_CACHE_MAX:
            ROUTE_CACHE.clear()
        ROUTE_CACHE[path] = route
    return route


# Each segment of digits as "0", over paths joined by newlines: paths that differ only in
# the numbers of such segments have one route (a digit segment is an id whatever its digits
# and length, and every other segment is templated alone), so their routes are looked up
# by this key, made for all of a chunk's paths in one substitution.
_DIGIT_SEGMENTS = re.compile(r"/[0-9]+(?=[/\n]|\Z)")
_BY_KEY: dict[str, str] = {}  # key -> route (bounded like the route memo)


def route_templates(paths: Sequence[str]) -> list[str]:
    """``route_template`` of each path: for the paths of a decoded chunk that were not
    in the memo (half of those of a day of API traffic: ids), most of which share a key
    with a path seen before (a regular expression's substitution and a call chain per
    path cost 1.5 us; a key looked up, about a tenth). The paths go into the memo."""
    if not paths:
        return []
    joined = "\n".join(paths)
    if joined.count("\n") != len(paths) - 1:  # a path with a newline in it
        return [route_template(p) for p in paths]
    keys = _DIGIT_SEGMENTS.sub("/0", joined).split("\n")
    routes = list(map(_BY_KEY.get, keys))
    if None in routes:
        if len(_BY_KEY) >= _ROUTE_CACHE_MAX:
            _BY_KEY.clear()
        for i, route in enumerate(routes):
            if route is None:
                route = routes[i] = _BY_KEY[keys[i]] = route_template(keys[i])
    made = cast(list[str], routes)  # no None left
    if len(ROUTE_CACHE) + len(paths) > _ROUTE_CACHE_MAX:
        ROUTE_CACHE.clear()
    ROUTE_CACHE.update(zip(paths, made, strict=True))
    return made


# --- request lines and targets -------------------------------------------------------------

_METHOD = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")


def parse_request_line(request: str) -> tuple[str | None, str, str | None]:
    """``"GET /a?b HTTP/1.1"`` → ``("GET", "/a?b", "1.1")``.

    A request line that is not ``METHOD TARGET [HTTP/x]`` (TLS bytes on a plain port,
    ``"-"``, ``"HELP"``) gives ``(None, raw, None)``: scanners send these, and the raw
    text (as the server escaped it) is evidence worth keeping; ``"-"`` and ``""`` give
    ``(None, "", None)``.
    """
    parts = request.split(" ")
    n = len(parts)
    if n == 3:
        method, target, proto = parts
        if proto.startswith("HTTP/") and _METHOD.fullmatch(method) and target:
            return method, target, proto[5:]
    if request in ("-", ""):
        return None, "", None
    if n == 2 and parts[1] and _METHOD.fullmatch(parts[0]) and parts[1][0] in "/h*":
        return parts[0], parts[1], None  # HTTP/0.9 style
    if n > 3 and parts[-1].startswith("HTTP/") and _METHOD.fullmatch(parts[0]):
        return parts[0], " ".join(parts[1:-1]), parts[-1][5:]  # unescaped spaces in target
    return None, request, None


def split_target(target: str) -> tuple[str, str | None]:
    """``/a?b=1`` → ``("/a", "b=1")``; no ``?`` → query ``None``."""
    path, sep, query = target.partition("?")
    return (path, query) if sep else (path, None)


_ABSOLUTE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)", re.DOTALL)


def parse_absolute(target: str) -> tuple[str, str | None, int | None, str] | None:
    """``http://h:8080/p?q`` → ``("http", "h", 8080, "/p?q")``; ``None`` if not absolute-form."""
    m = _ABSOLUTE.fullmatch(target)
    if m is None:
        return None
    scheme, authority, rest = m.groups()
    if "@" in authority:  # userinfo: never keep credentials in the host
        authority = authority.rpartition("@")[2]
    host, port = split_hostport(authority)
    return scheme.lower(), host, port, rest or "/"


def split_hostport(value: str) -> tuple[str | None, int | None]:
    """``"h:80"`` → ``("h", 80)``; ``"[::1]:80"`` → ``("::1", 80)``; bare IPv6 has no port."""
    if not value or value == "-":
        return None, None
    if value[0] == "[":
        host, _, rest = value[1:].partition("]")
        return host or None, to_int(rest[1:]) if rest.startswith(":") else None
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        p = to_int(port)
        if p is not None:
            return host or None, p
        return host or None, None
    return value, None


def norm_ip(value: str | None) -> str | None:
    """Client address as logged → plain IP text (brackets and ``::ffff:`` removed)."""
    if value is None or value == "-" or not value:
        return None
    if "[" in value:
        value = value.strip("[]")
    if value[:7].lower() == "::ffff:" and "." in value:
        value = value[7:]
    return value


def split_client(value: str | None, *, has_port: bool = False) -> tuple[str | None, int | None]:
    """``"1.2.3.4:5678"``, ``"[::1]:5678"`` → (ip, port); a bare IPv6 has no port.

    ``has_port`` is for formats that always append a port, even to an unbracketed IPv6
    address (HAProxy: ``2001:db8::1234:58430``).
    """
    if value is None or not value or value == "-":
        return None, None
    if value[0] == "[" or value.count(":") == 1:
        host, port = split_hostport(value)
        return norm_ip(host), port
    if has_port:
        head, sep, tail = value.rpartition(":")
        if sep and tail.isdigit():
            return norm_ip(head), int(tail)
    return norm_ip(value), None


def first_ip(value: str | None) -> str | None:
    """First entry of an ``X-Forwarded-For``-style list, as a plain IP."""
    if not value or value == "-":
        return None
    first = value.split(",", 1)[0].strip()
    return split_client(first)[0]


def last_ip(value: str | None) -> str | None:
    """Last entry of a comma list (the hop the nearest proxy saw)."""
    if not value or value == "-":
        return None
    last = value.rsplit(",", 1)[-1].strip()
    return split_client(last)[0]


# --- scalar values -------------------------------------------------------------------------


def to_int(value: str | None) -> int | None:
    """Decimal text → int; ``"-"``, empty or junk → ``None``."""
    if not value or value == "-":
        return None
    try:
        return int(value)
    except ValueError:
        return None


def to_float(value: str | None) -> float | None:
    """Decimal text → float; ``"-"``, empty, junk or non-finite → ``None``."""
    if not value or value == "-":
        return None
    try:
        f = float(value)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


_TLS_CODES = {"768": "SSLv3", "769": "1.0", "770": "1.1", "771": "1.2", "772": "1.3"}
_TLS_RE = re.compile(r"(?:TLS|tls)\s*v?(1(?:[._]\d)?)|(SSL|ssl)\s*v?([23])")


@lru_cache(maxsize=64)
def norm_tls(value: str | None) -> str | None:
    """``TLSv1.2`` / ``771`` / ``tls1_3`` / ``1.3`` → ``"1.2"``/``"1.3"``; ``SSLv3`` stays."""
    if not value or value in ("-", "none", "NONE", "unknown", "0"):
        return None
    code = _TLS_CODES.get(value)
    if code is not None:
        return code
    m = _TLS_RE.search(value)
    if m is not None:
        if m.group(1):
            v = m.group(1).replace("_", ".")
            return "1.0" if v == "1" else v
        return "SSLv" + m.group(3)
    if value in ("1.0", "1.1", "1.2", "1.3"):
        return value
    return None


def norm_http_version(value: str | None) -> str | None:
    """``HTTP/1.1`` → ``"1.1"``; ``"-"`` → ``None``; other text kept as logged."""
    if not value or value == "-":
        return None
    if value[:5].upper() == "HTTP/":
        return value[5:] or None
    return value


_SCHEMES = {
    "http": "http",
    "https": "https",
    "ws": "http",  # WebSocket over plain HTTP (ALB "ws")
    "wss": "https",
    "h2": "https",  # ALB: HTTP/2 over TLS
    "grpcs": "https",
    "h2c": "http",
}


def norm_scheme(value: str | None) -> str | None:
    """Scheme-ish text (``$scheme``, ALB ``type``, ``X-Forwarded-Proto``) → http/https."""
    if not value or value == "-":
        return None
    v = value.strip().lower()
    if "," in v:  # X-Forwarded-Proto chains: the first hop is the client's
        v = v.split(",", 1)[0].strip()
    return _SCHEMES.get(v)


def scheme_from_https(value: str | None) -> str | None:
    """nginx ``$https`` / Apache ``%{HTTPS}e``: "on" → https, empty/"-"/"off" → http."""
    if value is None:
        return None
    return "https" if value.strip().lower() in ("on", "1", "true", "yes") else "http"
