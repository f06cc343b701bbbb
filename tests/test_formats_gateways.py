"""Gateway formats added for issue 7: W3C extended / IIS and CloudFront (stateful per file),
Kong JSON, Cloudflare Logpush, Nginx Proxy Manager, Traefik old and new JSON names, HAProxy
captured headers, every ALB field and type; and how ``auto`` chooses, reports and switches.
Addresses and names are from the documentation ranges (RFC 5737, RFC 3849, example.com)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from auditor.formats import (
    FORMAT_NAMES,
    FormatSpec,
    SourceDecoder,
    build_decoder,
    detect_format,
    detection,
    is_directive,
    parse_fields,
)
from auditor.formats.decoder import REDETECT_AFTER, SAMPLE
from auditor.model import Event, Line
from auditor.normalize import PassThroughRedactor
from auditor.pipeline import Pipeline

PASS = PassThroughRedactor()

IIS = [
    "#Software: Microsoft Internet Information Services 10.0",
    "#Version: 1.0",
    "#Date: 2026-11-20 08:00:00",
    (
        "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip"
        " cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken"
    ),
    (
        "2026-11-20 08:00:01 10.0.0.5 GET /default.aspx id=7 443 - 192.0.2.10"
        " Mozilla/5.0+(Windows+NT+10.0) https://ref.example/ 200 0 0 15"
    ),
    "2026-11-20 08:00:02 10.0.0.5 POST /login.aspx - 443 alice 192.0.2.11 curl/8.4 - 401 1 0 3",
]
# After a restart IIS writes a new header, here with more fields (and its own order).
IIS_RESTART = [
    "#Software: Microsoft Internet Information Services 10.0",
    (
        "#Fields: date time cs-method cs-uri-stem cs-uri-query c-ip c-port cs-version cs-host"
        " sc-status sc-bytes cs-bytes time-taken X-Forwarded-For"
    ),
    (
        "2026-11-20 09:00:00 GET /api/v1/items q=1 192.0.2.12 50123 HTTP/1.1 shop.example.com"
        " 200 5120 310 42 198.51.100.7"
    ),
]
CF_FIELDS = (
    "date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status"
    " cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id"
    " x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher"
    " x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port"
    " time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len"
    " sc-range-start sc-range-end"
)


def cf_line(proto: str = "https", tls: str = "TLSv1.3", uri: str = "/index.html") -> str:
    values = [
        "2026-11-20", "08:01:02", "FRA56-P1", "392", "192.0.2.100", "GET",
        "d111111abcdef8.cloudfront.net", uri, "200", "-",
        "Mozilla/5.0%20(Windows%20NT%2010.0)", "a=1", "-", "Hit",
        "SOX4xwn4XV6Q4rgb7XiVGOHms_BGlTAC4KyHmureZmBNrjGdRLiNIQ==", "www.example.com", proto,
        "23", "0.012", "-", tls if proto == "https" else "-",
        "ECDHE-RSA-AES128-GCM-SHA256" if proto == "https" else "-", "Hit", "HTTP/2.0", "-",
        "-", "11040", "0.001", "Hit", "text/html", "78", "-", "-",
    ]  # fmt: skip
    return "\t".join(values)


CLOUDFRONT = ["#Version: 1.0", "#Fields: " + CF_FIELDS, cf_line(), cf_line("http")]

KONG_JSON = json.dumps(
    {
        "request": {
            "method": "GET",
            "uri": "/get?x=1",
            "url": "https://api.example.com:8443/get?x=1",
            "size": "86",
            "querystring": {"x": "1"},
            "headers": {
                "host": "api.example.com:8443",
                "user-agent": "curl/8.4.0",
                "x-forwarded-for": "198.51.100.4",
            },
            "tls": {"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384"},
            "id": "8c1a5e1f2d3c4b5a",
        },
        "upstream_uri": "/get?x=1",
        "response": {"status": 200, "size": "934", "headers": {}},
        "tries": [],
        "client_ip": "192.0.2.20",
        "latencies": {"request": 41, "kong": 1, "proxy": 40},
        "consumer": {"username": "alice", "id": "c1"},
        "started_at": 1795161600123,
        "service": {},
        "route": {},
    }
)
KONG_PLAIN = json.dumps(
    {
        "request": {
            "method": "POST",
            "uri": "/login",
            "url": "http://api.example.com:8000/login",
            "size": 120,
            "headers": {"host": "api.example.com:8000"},
        },
        "response": {"status": 401, "size": 50},
        "client_ip": "2001:db8::20",
        "latencies": {"request": 3},
        "started_at": 1795161601000,
    }
)
CLOUDFLARE = {
    "ClientIP": "192.0.2.30",
    "ClientSrcPort": 51234,
    "ClientRequestHost": "www.example.com",
    "ClientRequestMethod": "POST",
    "ClientRequestURI": "/login?next=%2F",
    "ClientRequestScheme": "https",
    "ClientRequestProtocol": "HTTP/2",
    "ClientSSLProtocol": "TLSv1.3",
    "EdgeResponseStatus": 403,
    "EdgeResponseBytes": 1024,
    "ClientRequestBytes": 512,
    "ClientRequestUserAgent": "Mozilla/5.0",
    "ClientRequestReferer": "https://www.example.com/",
    "EdgeStartTimestamp": 1795161600000000000,
    "EdgeEndTimestamp": 1795161600025000000,
    "RayID": "7a1b2c3d4e5f6789",
}
NPM = (
    '[20/Nov/2026:08:00:00 +0000] - 200 200 - GET https app.example.com "/api/x?y=1"'
    ' [Client 192.0.2.5] [Length 123] [Gzip -] [Sent-to 10.0.0.2] "curl/8" "-"'
)
TRAEFIK_V1 = {
    "BackendAddr": "10.0.0.3:80",
    "BackendName": "backend-web",
    "ClientAddr": "192.0.2.40:41234",
    "ClientHost": "192.0.2.40",
    "ClientPort": "41234",
    "ClientUsername": "-",
    "DownstreamContentSize": 512,
    "DownstreamStatusLine": "404 Not Found",
    "Duration": 1234567,
    "FrontendName": "frontend-web",
    "RequestAddr": "web.example.com",
    "RequestHost": "web.example.com",
    "RequestMethod": "GET",
    "RequestPath": "/old",
    "RequestPort": "-",
    "RequestProtocol": "HTTP/1.1",
    "StartUTC": "2026-11-20T08:00:00.1Z",
    "request_X-Forwarded-Proto": "http",
    "level": "info",
    "time": "2026-11-20T08:00:00Z",
}
TRAEFIK_V3 = {
    "ClientAddr": "192.0.2.41:41235",
    "ClientHost": "192.0.2.41",
    "ClientPort": "41235",
    "DownstreamContentSize": 10,
    "DownstreamStatus": 200,
    "Duration": 2000000,
    "RequestHost": "web.example.com",
    "RequestMethod": "GET",
    "RequestPath": "/new?a=b",
    "RequestPort": "443",
    "RequestProtocol": "HTTP/2.0",
    "RequestScheme": "https",
    "TLSVersion": "1.3",
    "TLSCipher": "TLS_AES_128_GCM_SHA256",
    "StartUTC": "2026-11-20T08:00:01Z",
    "request_User-Agent": "curl/8",
    "time": "2026-11-20T08:00:01Z",
}
HAPROXY_CAPTURES = (
    "192.0.2.60:53332 [20/Nov/2026:08:04:48.143] fe_https~ bk_app/app1 0/0/1/20/21 200 1394"
    " - - ---- 3/3/0/0/0 0/0 {shop.example.com|Mozilla/5.0 (X11; Linux x86_64)} {text/html|}"
    ' "GET /cart?id=3 HTTP/1.1"'
)
ALB_HEAD = (
    "{kind} 2026-11-20T08:03:00.463821Z app/my-lb/490d68edf04676fe 192.0.2.50:44740"
    ' 10.0.0.1:80 0.001 0.002 0.000 101 101 34 366 "GET {url} HTTP/1.1" "curl/8"'
)
ALB_TAIL = (
    " {cipher} {tls} arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/t/73e2"
    ' "Root=1-58337262-36d228ad5d99923122bbe354" "www.example.com" "arn:aws:acm:cert/x" 0'
    ' 2026-11-20T08:03:00.462000Z "forward" "-" "-" "10.0.0.1:80" "101" "-" "-"'
    ' TID_1234abcd5678ef90 "-" "-" "-"'
)


def alb(kind: str) -> str:
    secure = kind in ("https", "h2", "wss", "grpcs")
    scheme = {"ws": "ws", "wss": "wss"}.get(kind, "https" if secure else "http")
    head = ALB_HEAD.format(kind=kind, url=f"{scheme}://www.example.com:443/chat")
    return head + ALB_TAIL.format(
        cipher="ECDHE-RSA-AES128-GCM-SHA256" if secure else "-",
        tls="TLSv1.2" if secure else "-",
    )


def run(lines: list[str], fmt: str = "auto", file: str = "/var/log/x.log") -> list[Event | None]:
    dec = build_decoder(FormatSpec(fmt), PASS, "src")
    out: list[Event | None] = []
    offset = 0
    for text in lines:
        out.append(dec(Line("src", file, offset, offset + len(text) + 1, text)))
        offset += len(text) + 1
    return out


def only(events: list[Event | None]) -> list[Event]:
    return [e for e in events if e is not None]


# --- W3C extended / IIS and CloudFront -------------------------------------------------


@pytest.mark.parametrize("fmt", ["auto", "w3c", "iis"])
def test_iis_header_names_the_columns(fmt: str) -> None:
    events = run(IIS, fmt)
    assert events[:4] == [None] * 4  # directives are not events
    a, b = only(events)
    assert a.format == "w3c" if fmt == "auto" else a.format == fmt
    assert a.timestamp == datetime(2026, 11, 20, 8, 0, 1, tzinfo=UTC)
    assert (a.client_ip, a.method, a.path, a.query, a.status) == (
        "192.0.2.10",
        "GET",
        "/default.aspx",
        "id=7",
        200,
    )
    assert (a.user_agent, a.referrer, a.server_port, a.duration_ms) == (
        "Mozilla/5.0 (Windows NT 10.0)",
        "https://ref.example/",
        443,
        15.0,
    )
    assert (b.user_name, b.status, b.query) == ("alice", 401, None)


def test_iis_header_again_mid_file_rebinds_the_columns() -> None:
    events = only(run(IIS + IIS_RESTART))
    assert len(events) == 3
    c = events[2]
    assert (c.client_ip, c.client_port, c.host, c.http_version) == (
        "192.0.2.12",
        50123,
        "shop.example.com",
        "1.1",
    )
    assert (c.bytes_out, c.bytes_in, c.duration_ms, c.forwarded_for) == (
        5120,
        310,
        42.0,
        "198.51.100.7",
    )


def test_headers_are_per_file() -> None:
    dec = build_decoder(FormatSpec("auto"), PASS, "src")
    for n, text in enumerate(IIS_RESTART[:2]):
        dec(Line("src", "/b.log", n, n + 1, text))
    # /a.log has no header yet: the IIS default columns still apply to it.
    a = dec(Line("src", "/a.log", 0, 1, IIS[4]))
    b = dec(Line("src", "/b.log", 5, 6, IIS_RESTART[2]))
    assert a is not None and a.path == "/default.aspx"
    assert b is not None and b.host == "shop.example.com"


@pytest.mark.parametrize("fmt", ["auto", "cloudfront", "aws-cloudfront"])
def test_cloudfront(fmt: str) -> None:
    tls, plain = only(run(CLOUDFRONT, fmt))
    assert tls.format == ("cloudfront" if fmt == "auto" else fmt)
    assert (tls.scheme, tls.tls_version, tls.host, tls.http_version) == (
        "https",
        "1.3",
        "www.example.com",
        "2.0",
    )
    assert (tls.client_ip, tls.client_port, tls.status, tls.bytes_out, tls.bytes_in) == (
        "192.0.2.100",
        11040,
        200,
        392,
        23,
    )
    assert tls.duration_ms == pytest.approx(12.0)
    assert tls.user_agent == "Mozilla/5.0 (Windows NT 10.0)"  # CloudFront percent-encodes it
    assert (tls.path, tls.query) == ("/index.html", "a=1")
    assert tls.request_id == "SOX4xwn4XV6Q4rgb7XiVGOHms_BGlTAC4KyHmureZmBNrjGdRLiNIQ=="
    assert (plain.scheme, plain.tls_version) == ("http", None)


def test_cloudfront_without_header_uses_the_default_columns() -> None:
    (ev,) = only(run([cf_line()], "auto"))
    assert ev.format == "cloudfront" and ev.host == "www.example.com"
    assert detect_format([cf_line()] * 3) == "cloudfront"


def test_w3c_detection_comes_from_the_header() -> None:
    found = detection(IIS)
    assert found is not None and (found.name, found.matched, found.sampled) == ("w3c", 2, 2)
    assert found.describe() == "w3c (#Fields header, 2/2 sample lines)"
    assert detect_format(CLOUDFRONT) == "cloudfront"


def test_directives_are_neither_parsed_nor_unparsed() -> None:
    assert is_directive("#Date: 2026-11-20 08:00:00") and not is_directive("2026-11-20 08:")
    dec = build_decoder(FormatSpec("auto"), PASS, "src")
    lines = [Line("src", "/iis.log", i, i + 1, t) for i, t in enumerate([*IIS, "garbage"])]
    batch = Pipeline({"src": dec}, None).process(lines)
    c = batch.counters["src"]
    assert (c.lines_read, c.lines_parsed, c.lines_unparsed) == (7, 2, 1)
    assert batch.format_choices == [("src", "w3c (#Fields header, 2/3 sample lines) in /iis.log")]


def test_w3c_rejects_lines_that_do_not_fit() -> None:
    bad = [
        *IIS[:4],
        "2026-11-20 08:00:01 10.0.0.5 GET /x",  # too few columns
        "20261120 08:00:01 10.0.0.5 GET /default.aspx - 443 - 192.0.2.10 a - 200 0 0 15",
        "2026-11-20 08:00:01 10.0.0.5 get!! /x - 443 - 192.0.2.10 a - 200 0 0 15",
    ]
    assert run(bad, "w3c") == [None] * len(bad)
    assert parse_fields(FormatSpec("w3c"), IIS[4]) is not None


# --- JSON gateways ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["auto", "kong", "kong-json"])
def test_kong_json(fmt: str) -> None:
    ev, plain = only(run([KONG_JSON, KONG_PLAIN], fmt))
    assert ev.format == ("kong-json" if fmt == "auto" else fmt)
    assert ev.timestamp == datetime.fromtimestamp(1795161600.123, UTC)
    assert (ev.client_ip, ev.method, ev.path, ev.query, ev.status) == (
        "192.0.2.20",
        "GET",
        "/get",
        "x=1",
        200,
    )
    assert (ev.scheme, ev.tls_version, ev.host, ev.server_port) == (
        "https",
        "1.3",
        "api.example.com",
        8443,
    )
    assert (ev.bytes_in, ev.bytes_out, ev.duration_ms, ev.user_name) == (86, 934, 41.0, "alice")
    assert (ev.user_agent, ev.forwarded_for, ev.request_id) == (
        "curl/8.4.0",
        "198.51.100.4",
        "8c1a5e1f2d3c4b5a",
    )
    assert (plain.scheme, plain.tls_version, plain.status, plain.client_ip) == (
        "http",
        None,
        401,
        "2001:db8::20",
    )


@pytest.mark.parametrize(
    "start",
    [1795161600000000000, 1795161600000, 1795161600, "2026-11-20T08:00:00Z"],
    ids=["unixnano", "unixmilli", "unix", "rfc3339"],
)
def test_cloudflare_timestamps(start: object) -> None:
    rec = dict(CLOUDFLARE, EdgeStartTimestamp=start)
    rec.pop("EdgeEndTimestamp")
    (ev,) = only(run([json.dumps(rec)]))
    assert ev.format == "cloudflare"
    assert ev.timestamp == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def test_cloudflare_fields() -> None:
    (ev,) = only(run([json.dumps(CLOUDFLARE)], "cloudflare"))
    assert (ev.client_ip, ev.client_port, ev.method, ev.path, ev.query) == (
        "192.0.2.30",
        51234,
        "POST",
        "/login",
        "next=%2F",
    )
    assert (ev.host, ev.scheme, ev.tls_version, ev.http_version, ev.status) == (
        "www.example.com",
        "https",
        "1.3",
        "2",
        403,
    )
    assert (ev.bytes_in, ev.bytes_out, ev.request_id) == (512, 1024, "7a1b2c3d4e5f6789")
    assert ev.duration_ms == pytest.approx(25.0)
    plain = dict(CLOUDFLARE, ClientSSLProtocol="none")
    plain.pop("ClientRequestScheme")
    (ev2,) = only(run([json.dumps(plain)]))
    assert (ev2.scheme, ev2.tls_version) == ("http", None)


def test_traefik_json_old_and_new_names() -> None:
    old, new = only(run([json.dumps(TRAEFIK_V1), json.dumps(TRAEFIK_V3)], "traefik-json"))
    assert (old.status, old.client_ip, old.client_port, old.host, old.scheme) == (
        404,
        "192.0.2.40",
        41234,
        "web.example.com",
        "http",
    )
    assert old.duration_ms == pytest.approx(1.234567)
    assert (new.scheme, new.tls_version, new.server_port, new.query, new.user_agent) == (
        "https",
        "1.3",
        443,
        "a=b",
        "curl/8",
    )
    assert detect_format([json.dumps(TRAEFIK_V1), json.dumps(TRAEFIK_V3)]) == "traefik-json"


# --- text gateways ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["auto", "nginx-proxy-manager", "npm"])
def test_nginx_proxy_manager(fmt: str) -> None:
    (ev,) = only(run([NPM], fmt))
    assert ev.format == ("nginx-proxy-manager" if fmt == "auto" else fmt)
    assert (ev.client_ip, ev.method, ev.scheme, ev.host, ev.path, ev.query) == (
        "192.0.2.5",
        "GET",
        "https",
        "app.example.com",
        "/api/x",
        "y=1",
    )
    assert (ev.status, ev.bytes_out, ev.user_agent, ev.referrer) == (200, 123, "curl/8", None)


@pytest.mark.parametrize("wrap", ["", "<134>Nov 20 08:04:49 lb1 haproxy[7]: "])
def test_haproxy_captured_headers(wrap: str) -> None:
    (ev,) = only(run([wrap + HAPROXY_CAPTURES]))
    assert ev.format == "haproxy"
    assert (ev.client_ip, ev.scheme, ev.status, ev.bytes_out, ev.path, ev.query) == (
        "192.0.2.60",
        "https",
        200,
        1394,
        "/cart",
        "id=3",
    )
    assert ev.duration_ms == 21.0


@pytest.mark.parametrize(
    ("kind", "scheme"),
    [("http", "http"), ("https", "https"), ("h2", "https"), ("ws", "http"), ("wss", "https")]
    + [("grpcs", "https")],
)
def test_alb_types(kind: str, scheme: str) -> None:
    (ev,) = only(run([alb(kind)]))
    assert ev.format == "aws-alb"
    assert ev.scheme == scheme
    assert ev.tls_version == ("1.2" if scheme == "https" else None)
    assert (ev.client_ip, ev.client_port, ev.status, ev.bytes_in, ev.bytes_out) == (
        "192.0.2.50",
        44740,
        101,
        34,
        366,
    )
    assert ev.duration_ms == pytest.approx(3.0)


@pytest.mark.parametrize("kind", ["http", "https", "h2", "ws", "wss", "grpcs"])
def test_alb_events_are_the_same_without_the_explain_only_fields(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decode path leaves out the alb_* fields (explain shows them; no event field
    comes from them): the events are those built from every field."""
    from auditor.formats.proxies import AlbParser

    newer = alb(kind).removesuffix(' "-" "-" "-"') + ' "www2.example.com" "/r" "TRANSFORMED"'
    lines = [alb(kind), newer, alb(kind).replace('"-" "-" "-"', '"a" "b"')]
    lean = run(lines, "aws-alb")
    monkeypatch.setattr(AlbParser, "event_fields", AlbParser.fields)
    assert lean == run(lines, "aws-alb")
    assert all(e is not None for e in lean)


def test_alb_every_field_reaches_explain() -> None:
    fields = parse_fields(FormatSpec("aws-alb"), alb("h2"))
    assert fields is not None
    assert fields["alb_conn_trace_id"] == "TID_1234abcd5678ef90"
    assert fields["alb_actions_executed"] == "forward"
    assert fields["alb_target"] == "10.0.0.1:80"
    assert fields["sni"] == "www.example.com"
    assert "alb_transformed_host" not in fields  # logged as "-"
    newer = alb("h2").removesuffix(' "-" "-" "-"') + ' "www2.example.com" "/r" "TRANSFORMED"'
    more = parse_fields(FormatSpec("aws-alb"), newer)
    assert more is not None and more["alb_transformed_host"] == "www2.example.com"
    assert more["alb_request_transform_status"] == "TRANSFORMED"
    assert only(run([newer]))[0].status == 101


# --- auto: choice, confidence, strictness, switching ------------------------------------


COMBINED = (
    '203.0.113.9 - - [20/Nov/2026:08:00:00 +0000] "GET /a/1?x=1 HTTP/1.1" 200 512'
    ' "https://ref.example/" "curl/8"'
)


def test_auto_reports_what_it_chose_and_how_sure() -> None:
    dec = build_decoder(FormatSpec("auto"), PASS, "src")
    assert isinstance(dec, SourceDecoder)
    texts = [alb("https")] * (SAMPLE - 1) + ["garbage"] + [alb("https")] * 5
    for n, t in enumerate(texts):
        dec(Line("src", "/alb.log", n, n + 1, t))
    (choice,) = dec.take_choices()
    assert choice.describe() == f"aws-alb ({SAMPLE - 1}/{SAMPLE} sample lines)"
    assert dec.take_choices() == []  # drained


def test_auto_never_reads_one_format_as_another() -> None:
    """A stray line of another format inside a chosen file is unparsed, not re-read."""
    events = run([COMBINED, COMBINED, KONG_JSON, COMBINED])
    assert [e.format if e else None for e in events] == ["combined", "combined", None, "combined"]


def test_auto_companions_share_a_file() -> None:
    error = (
        '2026/11/20 08:00:01 [error] 12#12: *3 open() "/srv/x" failed (2: No such file'
        ' or directory), client: 192.0.2.9, server: _, request: "GET /x HTTP/1.1"'
    )
    events = run([COMBINED, error, COMBINED])
    assert [e.format if e else None for e in events] == ["combined", "nginx-error", "combined"]


def test_auto_corrects_a_misleading_first_line() -> None:
    traefik = (
        '192.0.2.7 - - [20/Nov/2026:08:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8"'
        ' 12 "web@docker" "http://10.0.0.2:80" 3ms'
    )
    dec = build_decoder(FormatSpec("auto"), PASS, "src")
    texts = [COMBINED] + [traefik] * (SAMPLE + 2)
    events = [dec(Line("src", "/t.log", n, n + 1, t)) for n, t in enumerate(texts)]
    assert events[-1] is not None and events[-1].format == "traefik-clf"
    assert events[-1].duration_ms == 3.0
    last = dec.take_choices()[-1]
    assert (last.format, last.previous) == ("traefik-clf", "combined")


def test_auto_switches_after_consecutive_misses_only() -> None:
    caddy_like = json.dumps(TRAEFIK_V3)
    texts = [COMBINED] * 3
    texts += [caddy_like] * (REDETECT_AFTER - 1) + [COMBINED]  # not enough in a row
    texts += [caddy_like] * (REDETECT_AFTER + 2)  # the file changed format
    events = run(texts)
    formats = [e.format if e else None for e in events]
    assert formats[: 3 + REDETECT_AFTER] == ["combined"] * 3 + [None] * (REDETECT_AFTER - 1) + [
        "combined"
    ]
    tail = formats[3 + REDETECT_AFTER :]
    assert tail == [None] * (REDETECT_AFTER - 1) + ["traefik-json"] * 3


def test_every_new_name_is_known() -> None:
    for name in (
        "w3c",
        "iis",
        "cloudfront",
        "aws-cloudfront",
        "kong-json",
        "nginx-proxy-manager",
        "npm",
    ):
        assert name in FORMAT_NAMES


# --- the shell: scan journals the choice, status shows it ----------------------------------


def test_scan_and_status_show_the_choice(tmp_path: Path) -> None:
    iis = tmp_path / "u_ex261120.log"
    iis.write_text("\n".join(IIS) + "\n", encoding="utf-8")
    alb_log = tmp_path / "alb.log"
    alb_log.write_text("\n".join([alb("https")] * 20) + "\n", encoding="utf-8")
    db = tmp_path / "a.db"
    cli = [sys.executable, "-m", "auditor"]
    scan = subprocess.run(
        [*cli, "scan", "--db", str(db), "--quiet", str(iis), str(alb_log)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert scan.returncode == 0, scan.stderr
    status = subprocess.run(
        [*cli, "status", "--db", str(db), "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    sources = {s["name"]: s for s in json.loads(status.stdout)["sources"]}
    s_iis, s_alb = sources[iis.name], sources[alb_log.name]
    assert (s_iis["lines_read"], s_iis["lines_parsed"], s_iis["lines_unparsed"]) == (6, 2, 0)
    assert s_iis["format_confidence"] == f"w3c (#Fields header, 2/2 sample lines) in {iis}"
    assert s_alb["format_confidence"] == f"aws-alb (20/20 sample lines) in {alb_log}"
    text = subprocess.run(
        [*cli, "explain"],
        input="\n".join(IIS),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0] == "format: w3c (#Fields header, 2/2 sample lines)"
