"""The Common Log Format family: nginx/Apache combined and common, vhost_combined, Kong,
Traefik CLF. This is the hot path, so it avoids per-line dicts and generic helpers.

Two regexes per variant: a strict one for clean lines (no backslash anywhere, so quoted
fields cannot hide an escaped quote), and a lenient one that understands ``\\"`` escapes,
a leading vhost, a missing ident field and user names with spaces. Both feed the same
inline normalization, which does what ``build_event`` does for other formats.
"""

from __future__ import annotations

import re

from auditor.formats.event import EventType
from auditor.formats.spec import BoundDecode, Ctx
from auditor.formats.times import TIME_CACHE, parse_time
from auditor.model import Event, Line
from auditor.normalize import (
    ROUTE_CACHE,
    norm_ip,
    norm_scheme,
    parse_absolute,
    parse_request_line,
    route_template,
    split_hostport,
)

_TIME = r"\d{1,2}/[A-Za-z]{3}/\d{4}:\d\d:\d\d:\d\d(?:[.,]\d+)?(?: ?[+-]\d\d:?\d\d)?"
_QL = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # quoted field with \" escapes (Apache)

# The quantifiers of the clean-line patterns are possessive ("+" after them): each run stops
# at a character its class excludes and the pattern needs next, so giving characters back
# could never lead to a match. Not trying is a fifth of the match's time.
_QS = r'"([^"]*+)"'  # quoted field, strict (line has no backslash)
# The request line of a clean line is split by the regex itself (cheaper than str.split):
# METHOD /target HTTP/x, or anything else as a whole.
_REQ = r'"(?:([A-Z]{1,16}+) (/[^" ]*+) HTTP/([0-9.]{1,3}+)|([^"]*+))"'
_TAIL = r" (\d{3}|-) (\d++|-)(?: " + _QS + " " + _QS + ")?(.*)"
# client ident user [time] "request" status bytes ["referer" "user-agent"] rest
_STRICT = re.compile(
    r"(\S{1,1024}+) (\S{1,1024}+) (\S{1,1024}+) \[([^\]]{1,64}+)\] " + _REQ + _TAIL
)
_STRICT_VHOST = re.compile(
    r"(\S{1,1024}+) ([0-9A-Fa-f:.]{1,64}+|\[[0-9A-Fa-f:.]{1,64}+\]) (\S{1,1024}+) (\S{1,1024}+)"
    r" \[([^\]]{1,64}+)\] " + _REQ + _TAIL
)
_LENIENT = re.compile(
    r"(.{0,1024}?) ?\[("
    + _TIME
    + r")\] "
    + _QL
    + r" (\d{3}|-) (-?\d+|-)(?: "
    + _QL
    + "(?: "
    + _QL
    + ")?)?(.*)"
)
_TRAEFIK_TAIL = re.compile(r' (\d+|-) "([^"]*)" "([^"]*)" (\d+)ms')
_CLIENT = re.compile(
    r"[0-9A-Fa-f:.]+|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+|localhost|unix:\S*"
)
_IPISH = re.compile(r"[0-9A-Fa-f]*[.:][0-9A-Fa-f:.]*|\[[0-9A-Fa-f:.]+\]")
_IPLIST = re.compile(r"[0-9A-Fa-f:.\[\], ]+|unknown")

VARIANTS = ("combined", "common", "vhost", "traefik")
_STATUS = {f"{i:03d}": i for i in range(1000)}  # "-" → None; the regexes allow 3 digits


def _split_prefix(pre: str) -> tuple[str | None, str, str] | None:
    """The part before ``[time]`` → (vhost, client, user), or ``None`` if it is not CLF."""
    tokens = pre.split()
    n = len(tokens)
    if n == 0 or n > 8:
        return None
    if n >= 4 and _IPISH.fullmatch(tokens[1]) and (tokens[2] == "-" or n == 4):
        # vhost client ident user
        return tokens[0], tokens[1], " ".join(tokens[3:])
    if not _CLIENT.fullmatch(tokens[0]):
        return None
    if n == 1:
        return None, tokens[0], "-"
    if n == 2:  # ident or user missing ("1.2.3.4 - [time]")
        return None, tokens[0], tokens[1]
    return None, tokens[0], " ".join(tokens[2:])


def xff_from_rest(rest: str) -> str | None:
    """nginx's stock ``main`` format appends ``"$http_x_forwarded_for"``: pick it up."""
    if rest[:2] != ' "':
        return None
    end = rest.find('"', 2)
    if end < 0:
        return None
    value = rest[2:end]
    if value and value != "-" and _IPLIST.fullmatch(value):
        return value
    return None


class ClfParser:
    """One named member of the CLF family (``variant`` is one of ``VARIANTS``)."""

    lenient = True

    def __init__(self, name: str, variant: str) -> None:
        self.name = name
        self.variant = variant

    # -- raw fields (explain, detection) -----------------------------------------------------

    def _groups(self, text: str) -> tuple[str | None, ...] | None:
        """(vhost, client, user, time, request, status, bytes, referer, ua, rest)."""
        if "\\" not in text:
            m = (_STRICT_VHOST if self.variant == "vhost" else _STRICT).match(text)
            if m is not None:
                g = m.groups() if self.variant == "vhost" else (None, *m.groups())
                vh, cl, _id, us, ts, meth, target, ver, raw, *rest = g
                req = f"{meth} {target} HTTP/{ver}" if meth is not None else raw
                return (vh, cl, us, ts, req, *rest)
        m = _LENIENT.match(text) if '] "' in text else None
        if m is None:
            return None
        pre, *rest = m.groups()
        split = _split_prefix(pre or "")
        if split is None:
            return None
        return (*split, *rest)

    def fields(self, text: str) -> dict[str, str] | None:
        g = self._groups(text)
        if g is None:
            return None
        vhost, client, user, ts, req, status, nbytes, ref, ua, rest = g
        out = {"client": client or "", "user": user or "", "time": ts or "", "request": req or ""}
        out.update(status=status or "", bytes_out=nbytes or "")
        if ref is not None:
            out["referrer"] = ref
        if ua is not None:
            out["user_agent"] = ua
        if vhost is not None:
            out["host"] = vhost
        if rest:
            tail = _TRAEFIK_TAIL.match(rest) if self.variant == "traefik" else None
            if tail is not None:
                out["duration_ms"] = tail.group(4)
            else:
                xff = xff_from_rest(rest)
                if xff is not None:
                    out["forwarded_for"] = xff
        return out

    def probe(self, text: str) -> bool:
        g = self._groups(text)
        if g is None:
            return False
        vhost, ua, rest = g[0], g[8], g[9] or ""
        if self.variant == "vhost":
            return vhost is not None and ua is not None and not rest
        if vhost is not None:
            return False
        if self.variant == "traefik":
            return ua is not None and _TRAEFIK_TAIL.fullmatch(rest) is not None
        if self.variant == "common":
            return ua is None and not rest
        return ua is not None and (not rest or rest.startswith(' "'))

    # -- the hot path ------------------------------------------------------------------------

    def bind(self, ctx: Ctx) -> BoundDecode:  # noqa: C901 - one flat function is the point
        name = self.name
        source = ctx.source
        default_scheme = norm_scheme(ctx.scheme)
        redactor = ctx.redactor
        redact_target = redactor.redact_target
        redact_url = redactor.redact_url
        redact_text = redactor.redact_text
        redact_user = redactor.redact_user
        tget = TIME_CACHE.get
        strict = (_STRICT_VHOST if self.variant == "vhost" else _STRICT).match
        lenient = _LENIENT.match
        traefik = self.variant == "traefik"
        vhost_variant = self.variant == "vhost"
        traefik_tail = _TRAEFIK_TAIL.match
        make_event = EventType
        route_get = ROUTE_CACHE.get
        status_int = _STATUS.get

        def lenient_groups(text: str) -> tuple[str | None, ...] | None:
            m = lenient(text) if '] "' in text else None
            if m is None:
                return None
            pre, *rest = m.groups()
            split = _split_prefix(pre)
            return None if split is None else (*split, *rest)

        def decode(text: str, line: Line) -> Event | None:  # noqa: C901
            m = strict(text) if "\\" not in text else None
            if m is not None:
                if vhost_variant:
                    (vhost, client, _i, user, ts, method, target, version, req, status, nbytes) = (
                        m.group(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
                    )
                    ref, ua, rest = m.group(12, 13, 14)
                else:
                    (
                        client,
                        _i,
                        user,
                        ts,
                        method,
                        target,
                        version,
                        req,
                        status,
                        nbytes,
                        ref,
                        ua,
                        rest,
                    ) = m.groups()
                    vhost = None
            else:
                g = lenient_groups(text)
                if g is None:
                    return None
                vhost, client, user, ts, req, status, nbytes, ref, ua, rest = g
                method = None
            dt = tget(ts) or parse_time(ts)
            if dt is None:
                return None
            if method is None:
                method, target, version = parse_request_line(req)
            scheme = default_scheme
            host: str | None = None
            port: int | None = None
            if vhost is not None:
                host, port = split_hostport(vhost)
            if target and target[0] != "/":
                absolute = parse_absolute(target)
                if absolute is not None:
                    abs_scheme, abs_host, abs_port, target = absolute
                    if scheme is None:
                        scheme = norm_scheme(abs_scheme)
                    host = host or abs_host
                    if port is None:
                        port = abs_port
            path, sep, query = target.partition("?")
            path, query, exposures = redact_target(path, query if sep else None)
            if ref is None or ref == "-" or not ref:
                referrer = None
            else:
                referrer, more = redact_url(ref, "referer")
                if more:
                    exposures = exposures + more
            if ":" in client or "[" in client:
                ip = norm_ip(client)
            else:
                ip = client if client != "-" else None
            duration = None
            xff = None
            if rest:
                trailer = traefik_tail(rest) if traefik else None
                if trailer is not None:
                    duration = float(trailer.group(4))
                else:
                    xff = xff_from_rest(rest)
            return make_event(
                dt,
                source,
                name,
                ip,
                None,
                method,
                scheme,
                host,
                port,
                path,
                route_get(path) or route_template(path),
                query,
                version,
                status_int(status),
                None,
                int(nbytes) if nbytes[0] != "-" else None,
                duration,
                None if user == "-" or not user else redact_user(user),
                None if ua is None or ua == "-" or not ua else redact_text(ua),
                referrer,
                None,
                None,
                xff,
                line.file,
                line.offset,
                exposures,
            )

        return decode
