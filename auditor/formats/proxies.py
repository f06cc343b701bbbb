"""Load balancer and proxy text formats: AWS ALB, HAProxy httplog, Envoy's default format.

These log the client-side transport better than a web server's default format does: the
ALB ``type`` field, HAProxy's ``~`` after an SSL frontend's name, Envoy's SNI.
"""

from __future__ import annotations

import re

from auditor.formats.event import DictParser, assemble
from auditor.formats.spec import BoundDecode, Ctx
from auditor.model import Event, Line
from auditor.normalize import first_ip, split_client, to_float

_Q = r'"([^"\\]*(?:\\.[^"\\]*)*)"'

# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-access-logs.html
_ALB = re.compile(
    r"(https?|h2|grpcs|wss?) (\d{4}-\d\d-\d\dT\S+) (\S+) (\S+) (\S+) (\S+) (\S+) (\S+)"
    r" (\S+) (\S+) (\S+) (\S+) "
    + _Q
    + " "
    + _Q
    + r" (\S+) (\S+) (\S+) "
    + _Q
    + r"(?: "
    + _Q
    + ")?(.*)"
)


# The fields after domain_name, in AWS's order; AWS appends new ones at the end, so a
# line may carry fewer (older logs) or more (newer ones, ignored).
ALB_TRAILING = (
    "chosen_cert_arn",
    "matched_rule_priority",
    "request_creation_time",
    "actions_executed",
    "redirect_url",
    "error_reason",
    "target_port_list",
    "target_status_code_list",
    "classification",
    "classification_reason",
    "conn_trace_id",
    "transformed_host",
    "transformed_uri",
    "request_transform_status",
)
_TOKEN = re.compile(r' (?:"((?:[^"\\]|\\.)*)"|(\S+))')


def alb_trailing(rest: str) -> dict[str, str]:
    """The named trailing fields of an ALB line (``rest`` starts after domain_name)."""
    out: dict[str, str] = {}
    for name, m in zip(ALB_TRAILING, _TOKEN.finditer(rest), strict=False):
        value = m.group(1) if m.group(1) is not None else m.group(2)
        if value and value != "-":
            out["alb_" + name] = value
    return out


class AlbParser(DictParser):
    """AWS Application Load Balancer access log: every field up to AWS's newest
    (``transformed_host``...); ``type`` http/https/h2/ws/wss/grpcs gives the scheme."""

    def __init__(self, name: str = "aws-alb") -> None:
        self.name = name

    def fields(self, text: str) -> dict[str, str] | None:
        return self._fields(text, every=True)

    def event_fields(self, text: str) -> dict[str, str] | None:
        # The alb_* fields are for explain only; the trailing ones cost as much to split
        # as the rest of the line to decode.
        return self._fields(text, every=False)

    def _fields(self, text: str, *, every: bool) -> dict[str, str] | None:
        m = _ALB.match(text)
        if m is None:
            return None
        (kind, ts, elb, client, target, t1, t2, t3, status, tstatus, rx, tx, req, ua) = m.groups()[
            :14
        ]
        cipher, tls, tg, trace, domain, rest = m.groups()[14:]
        raw = {"scheme": kind, "time": ts, "client": client, "status": status}
        if every:
            raw.update(alb_elb=elb, alb_target=target, alb_target_status=tstatus)
            raw.update(alb_ssl_cipher=cipher, alb_target_group_arn=tg)
            if rest:
                raw.update(alb_trailing(rest))
        raw.update(bytes_in=rx, bytes_out=tx, request=req, user_agent=ua, tls_version=tls)
        raw["request_id"] = trace
        if domain and domain != "-":
            raw["sni"] = domain
        times = [to_float(t) for t in (t1, t2, t3)]
        if all(t is not None and t >= 0 for t in times):
            raw["duration_s"] = repr(sum(t for t in times if t is not None))
        return raw


# client:port [accept_date] frontend backend/server TR/Tw/Tc/Tr/Ta status bytes
#   req_cookie resp_cookie termination act/fe/be/srv/retries srv_queue/backend_queue
#   [{captured request headers}] [{captured response headers}] "request"
# Only Ta of the timers is captured (the others reach no field). The request runs to the
# end of the line; its closing quote is taken off in code: a lazy ``(.*?)"?`` under
# ``fullmatch`` tried to end the match at every character.
_HAPROXY = re.compile(
    r"(\S{1,64}) \[(\d{1,2}/[A-Za-z]{3}/\d{4}:\d\d:\d\d:\d\d(?:\.\d+)?)\] (\S+) \S+/\S+"
    r" -?\d+/-?\d+/-?\d+/-?\d+/\+?(-?\d+) (-?\d+) \+?(\d+) \S+ \S+ \S{4}"
    r" \d+/\d+/\d+/\d+/\+?\d+ \d+/\d+"
    r"(?: \{(?:[^}\\]|\\.)*\})?(?: \{(?:[^}\\]|\\.)*\})? \"(.*)"
)


def _haproxy_client(client: str) -> tuple[str | None, int | None]:
    """``split_client(client, has_port=True)`` with the usual ``ipv4:port`` inline."""
    if client.count(":") == 1 and "[" not in client:
        host, _, port = client.partition(":")
        if port.isdigit() and port.isascii():
            return (host if host and host != "-" else None), int(port)
    return split_client(client, has_port=True)


class HaproxyParser(DictParser):
    """HAProxy ``option httplog`` (syslog header stripped by the decoder)."""

    def __init__(self, name: str = "haproxy") -> None:
        self.name = name

    def fields(self, text: str) -> dict[str, str] | None:
        m = _HAPROXY.fullmatch(text)
        if m is None:
            return None
        client, ts, frontend, ta, status, nbytes, req = m.groups()
        if req[-1:] == '"':
            req = req[:-1]
        raw = {"time": ts, "request": req, "bytes_out": nbytes}
        ip, port = _haproxy_client(client)  # IPv6 is logged without brackets
        if ip is not None:
            raw["client_ip"] = ip
        if port is not None:
            raw["client_port"] = str(port)
        if status != "-1":
            raw["status"] = status
        # %ft: an SSL frontend's name is logged with a trailing "~" (HAProxy docs, 8.2.3).
        raw["scheme"] = "https" if frontend[-1] == "~" else "http"
        if ta[0] != "-":
            raw["duration_ms"] = ta
        return raw

    def bind(self, ctx: Ctx) -> BoundDecode:
        """``fields`` and ``build_event`` in one, with no dict in between."""
        match = _HAPROXY.fullmatch
        name = self.name

        def decode(text: str, line: Line) -> Event | None:
            m = match(text)
            if m is None:
                return None
            client, ts, frontend, ta, status, nbytes, req = m.groups()
            if req[-1:] == '"':
                req = req[:-1]
            ip, port = _haproxy_client(client)
            # assemble's arguments in RAW_KEYS order (None: a field this format lacks)
            return assemble(
                ctx, line, name,
                ts, None, ip, port, None, req, None, None, None, None,  # time..protocol
                None if status == "-1" else status, None, nbytes,  # status, bytes in/out
                None, None if ta[0] == "-" else ta, None, None,  # duration s/ms/us/ns
                None, None, None, None, None,  # user, user_agent, referrer, host, port
                "https" if frontend[-1] == "~" else "http",  # scheme
                None, None, None, None, None, None,  # https..forwarded_for
            )  # fmt: skip

        return decode


# Envoy's default format, optionally with Istio's extra fields:
# [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%
# %RESPONSE_FLAGS% [%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
# "%UPSTREAM_TRANSPORT_FAILURE_REASON%"] %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
# %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
# "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" [istio: cluster, upstream local,
# downstream local, downstream remote, SNI, route]
_ENVOY = re.compile(
    r"\[(\d{4}-\d\d-\d\dT[^\]]+)\] " + _Q + r" (\d{1,3}|-) (\S+)(?: (\S+) (\S+) " + _Q + r")?"
    r" (\d+|-) (\d+|-) (\d+|-) (\S+) " + _Q + " " + _Q + " " + _Q + " " + _Q + " " + _Q + "(.*)"
)


def _first_hop(xff: str) -> str | None:
    """``first_ip`` with a single IPv4-style hop inline."""
    if "," in xff or ":" in xff or "[" in xff:
        return first_ip(xff)
    hop = xff.strip()
    return hop if hop and hop != "-" else None


class EnvoyTextParser(DictParser):
    """Envoy (and Istio) default text access log."""

    def __init__(self, name: str = "envoy") -> None:
        self.name = name

    def fields(self, text: str) -> dict[str, str] | None:
        m = _ENVOY.match(text)
        if m is None:
            return None
        ts, req, status, _flags, details, _term, _fail, rx, tx, dur = m.groups()[:10]
        _ust, xff, ua, rid, authority, _upstream, rest = m.groups()[10:]
        raw = {"time": ts, "request": req, "status": status, "bytes_in": rx, "bytes_out": tx}
        raw.update(duration_ms=dur, user_agent=ua, request_id=rid, host=authority)
        if xff and xff != "-":
            raw["forwarded_for"] = xff
        tokens = rest.split() if details is not None else []
        if len(tokens) >= 5:  # Istio: downstream remote address and SNI are logged
            raw["client"] = tokens[3]
            if tokens[4] != "-":
                raw["sni"] = tokens[4]
        elif xff:
            # The default format has no peer address: the first X-Forwarded-For hop is the
            # best client we have (what CrowdSec's envoy parser reports too).
            ip = _first_hop(xff)
            if ip:
                raw["client_ip"] = ip
        return raw

    def bind(self, ctx: Ctx) -> BoundDecode:
        """``fields`` and ``build_event`` in one, with no dict in between."""
        match = _ENVOY.match
        name = self.name

        def decode(text: str, line: Line) -> Event | None:
            m = match(text)
            if m is None:
                return None
            (
                ts,
                req,
                status,
                _fl,
                details,
                _te,
                _fa,
                rx,
                tx,
                dur,
                _us,
                xff,
                ua,
                rid,
                host,
                _up,
                rest,
            ) = m.groups()
            client = client_ip = sni = None
            tokens = rest.split() if details is not None else []
            if len(tokens) >= 5:
                client = tokens[3]
                if tokens[4] != "-":
                    sni = tokens[4]
            elif xff:
                client_ip = _first_hop(xff) or None
            # assemble's arguments in RAW_KEYS order (None: a field this format lacks)
            return assemble(
                ctx, line, name,
                ts, client, client_ip, None, None, req, None, None, None, None,  # ..protocol
                status, rx, tx, None, dur, None, None,  # status, bytes, durations
                None, ua, None, host, None,  # user, user_agent, referrer, host, server_port
                None, None, None, None, sni, rid,  # scheme, https, fwd proto, tls, sni, id
                xff if xff and xff != "-" else None,
            )  # fmt: skip

        return decode
