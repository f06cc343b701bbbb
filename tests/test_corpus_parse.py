"""The real-log conformance suite: every access line of the corpus parses, fields match
what CrowdSec's and Datadog's own tests expect, and ``auto`` picks the right format.

Files are read in place from ../shared/corpus (or $LOG_AUDITOR_CORPUS); without it the
tests skip. CrowdSec's ``parser.assert`` lines are Go ``expr`` expressions; we only read
``Evt.Parsed[...]``/``Evt.Meta[...] == "..."`` pairs out of them with a regex.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from auditor.formats import FormatSpec, build_decoder, detect_format
from auditor.model import Event, Line
from auditor.normalize import PassThroughRedactor
from factories import corpus_dir

CORPUS = corpus_dir()
needs_corpus = pytest.mark.skipif(
    CORPUS is None,
    reason="corpus absent: set LOG_AUDITOR_CORPUS or put ../shared/corpus beside the repo",
)

# Access-log files (and nginx error logs, which we also read) → the format ``auto`` must
# detect, and how many lines are *not* requests (so they may, and must, stay unparsed).
FILES: dict[str, tuple[str, int]] = {
    "crowdsec-hub/apache-http-probing/apache-http-probing.log": ("common", 0),
    "crowdsec-hub/apache2-http-sensitive-files/apache2-http-sensitive-files.log": ("common", 0),
    "crowdsec-hub/apache2-logs/apache2-logs.log": ("combined", 2),  # 2 Apache error_log lines
    "crowdsec-hub/apache_log4j2_cve-2021-44228/apache_log4j2_cve-2021-44228.log": ("combined", 0),
    "crowdsec-hub/aws-alb-logs/aws-alb-logs.log": ("aws-alb", 0),
    "crowdsec-hub/caddy-basic-auth-bf/caddy-logs.log": ("caddy", 0),
    "crowdsec-hub/caddy-logs/caddy-logs.log": ("caddy", 1),  # a reverse_proxy debug record
    "crowdsec-hub/envoy-logs/envoy.log": ("envoy", 0),
    "crowdsec-hub/haproxy-logs/haproxy-logs.log": ("haproxy", 3),  # TLS handshake failures
    "crowdsec-hub/http-bf-wordpress-bf/http-bf-wordpress-bf.log": ("combined", 0),
    "crowdsec-hub/http-dos-random-uri/http_dos_random_uri.log": ("combined", 0),
    "crowdsec-hub/http-generic-test/http-generic-test.log": ("combined", 0),
    "crowdsec-hub/nginx-http-generic-bf/nginx-http-generic-bf.log": ("nginx-error", 0),
    "crowdsec-hub/nginx-http-path-traversal/nginx-http-path-traversal.log": ("combined", 0),
    "crowdsec-hub/nginx-http-sensitive-files/nginx-http-sensitive-files.log": ("combined", 0),
    "crowdsec-hub/nginx-http-sqli-probing/nginx-http-sqli-probing.log": ("combined", 0),
    "crowdsec-hub/nginx-http-xss-probing/nginx-http-xss-probing.log": ("combined", 0),
    "crowdsec-hub/nginx_http-logs/nginx_http-logs.log": ("combined", 0),
    "crowdsec-hub/nginx_req_limit_exceeded/nginx_req_limit_exceeded.log": ("nginx-error", 0),
    "crowdsec-hub/traefik_clf/traefik_clf.log": ("traefik-clf", 0),
    "crowdsec-hub/traefik_json/traefik_json.log": ("traefik-json", 1),  # a plugin's debug line
    "elastic-examples/apache_logs": ("combined", 0),
    "fail2ban/haproxy-http-auth": ("haproxy", 0),
    "fail2ban/nginx-bad-request": ("combined", 0),
    "fail2ban/nginx-botsearch": ("combined", 0),
    "fail2ban/nginx-forbidden": ("nginx-error", 0),
    "fail2ban/nginx-http-auth": ("nginx-error", 7),  # TLS errors: no request in them
    "fail2ban/nginx-limit-req": ("nginx-error", 0),
    "fail2ban/traefik-auth": ("traefik-clf", 0),
    "lnav/logfile_access_log.0": ("combined", 0),
    "lnav/logfile_access_log.1": ("combined", 0),
    "lnav/logfile_caddy_log.0": ("caddy", 35),  # Caddy startup/TLS records, not requests
    "lnav/logfile_cloudflare.json": ("cloudflare", 0),
    "lnav/logfile_haproxy.0": ("haproxy", 4),  # proxy start-up and an SSL handshake failure
    "lnav/logfile_shop_access_log.0": ("combined", 0),
}
# What an unparsed line may look like: never an access line.
NOT_A_REQUEST = re.compile(
    r"^\[\w{3} \w{3} |SSL handshake|heartbeat|^DEBUG: |\"logger\":\"(?!http\.log\.access)"
    r"| \[crit\] .*SSL_|Proxy \S+ started|^caddy +\| \{\"level\":\"\w+\",\"ts\":[\d.]+,\"msg\""
)


def lines_of(rel: str) -> list[str]:
    """Non-blank, non-comment lines (fail2ban annotates with ``# failJSON:``)."""
    assert CORPUS is not None
    text = (CORPUS / rel).read_text(encoding="utf-8", errors="replace")
    return [s for s in text.splitlines() if s.strip() and not s.startswith("#")]


def decode_all(rel: str, fmt: str = "auto") -> list[Event | None]:
    decode = build_decoder(FormatSpec(fmt), PassThroughRedactor(), "corpus")
    out: list[Event | None] = []
    offset = 0
    for text in lines_of(rel):
        out.append(decode(Line("corpus", rel, offset, offset + len(text) + 1, text)))
        offset += len(text) + 1
    return out


@needs_corpus
@pytest.mark.parametrize("rel", sorted(FILES))
def test_every_access_line_parses(rel: str) -> None:
    _fmt, not_requests = FILES[rel]
    lines = lines_of(rel)
    events = decode_all(rel)
    unparsed = [t for t, ev in zip(lines, events, strict=True) if ev is None]
    assert len(unparsed) == not_requests, unparsed[:5]
    for text in unparsed:
        assert NOT_A_REQUEST.search(text), f"an access line did not parse: {text[:200]}"
    for ev in events:
        if ev is not None:
            assert ev.timestamp.tzinfo is UTC
            assert ev.status is None or 0 <= ev.status <= 999


@needs_corpus
@pytest.mark.parametrize("rel", sorted(FILES))
def test_auto_detects_the_format(rel: str) -> None:
    expected, _n = FILES[rel]
    assert detect_format(lines_of(rel)[:20]) == expected
    formats = [ev.format for ev in decode_all(rel) if ev is not None]
    assert formats.count(expected) > len(formats) / 2
    # What the decoder itself reports (journalled, shown by `status`) names it too.
    decode = build_decoder(FormatSpec("auto"), PassThroughRedactor(), "corpus")
    offset = 0
    for text in lines_of(rel):
        decode(Line("corpus", rel, offset, offset + len(text) + 1, text))
        offset += len(text) + 1
    choices = decode.take_choices()
    assert choices and choices[-1].format == expected, choices


@needs_corpus
@pytest.mark.parametrize("rel", sorted(r for r, (f, n) in FILES.items() if n == 0))
def test_named_format_agrees_with_auto(rel: str) -> None:
    expected, _n = FILES[rel]
    auto = decode_all(rel)
    named = decode_all(rel, expected)
    if any(ev is not None and ev.format != expected for ev in auto):
        pytest.skip("file mixes access and error log lines")
    assert [ev is not None for ev in named] == [True] * len(named)
    assert named == auto


@needs_corpus
def test_elastic_apache_logs_parse_rate() -> None:
    events = decode_all("elastic-examples/apache_logs", "apache-combined")
    assert len(events) == 10_000
    assert sum(ev is not None for ev in events) >= 9_990
    statuses = [ev.status for ev in events if ev is not None]
    assert statuses.count(200) == 9126 and statuses.count(404) == 213 and statuses.count(403) == 2


# --- CrowdSec parser.assert -------------------------------------------------------------

ASSERT = re.compile(
    r'^results\["s01-parse"\]\["[^"]+"\]\[(\d+)\]\.Evt\.(Parsed|Meta)\["([^"]+)"\]'
    r' == "((?:[^"\\]|\\.)*)"$'
)
SUCCESS = re.compile(r'^results\["s01-parse"\]\["[^"]+"\]\[(\d+)\]\.Success == (true|false)$')
ASSERT_DIRS = (
    "nginx_http-logs",
    "nginx_req_limit_exceeded",
    "apache2-logs",
    "aws-alb-logs",
    "caddy-logs",
    "envoy-logs",
    "haproxy-logs",
    "traefik_clf",
    "traefik_json",
)


def _none_if_dash(v: str) -> str | None:
    return None if v in ("-", "") else v


def _target(ev: Event) -> str:
    return ev.path + ("?" + ev.query if ev.query is not None else "")


def _request(ev: Event, v: str) -> bool:
    # CrowdSec's grok keeps "//host" of an absolute-form target ("POST https://h/") in
    # its request field; we split scheme, host and path, which is the ECS reading.
    return _target(ev) == v or (v.startswith("//") and f"//{ev.host}{_target(ev)}" == v)


def _ts(v: str) -> datetime:
    for fmt in ("%d/%b/%Y:%H:%M:%S %z", "%d/%b/%Y:%H:%M:%S.%f", "%Y/%m/%d %H:%M:%S"):
        try:
            dt = datetime.strptime(v, fmt)
        except ValueError:
            continue
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    dt = datetime.fromisoformat(v)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _host(ev: Event) -> set[str | None]:
    return {ev.host, f"{ev.host}:{ev.server_port}"}


# CrowdSec field → (what to compare on our event, how to read their value)
Check = Callable[[Event, str], bool]
CHECKS: dict[str, Check] = {
    "remote_addr": lambda ev, v: ev.client_ip == v,
    "clientip": lambda ev, v: ev.client_ip == v,
    "remote_ip": lambda ev, v: ev.client_ip == v,
    "client_ip": lambda ev, v: ev.client_ip == v,
    "source_ip": lambda ev, v: ev.client_ip == v,
    "remote_port": lambda ev, v: ev.client_port == int(v),
    "client_port": lambda ev, v: ev.client_port == int(v),
    "verb": lambda ev, v: ev.method == v,
    "http_method": lambda ev, v: ev.method == v,
    "http_verb": lambda ev, v: ev.method == v,
    "request": _request,
    "http_request": _request,
    "http_path": _request,
    "status": lambda ev, v: ev.status == (None if v == "-" else int(v)),
    "response": lambda ev, v: ev.status == int(v),
    "elb_status_code": lambda ev, v: ev.status == int(v),
    "http_status_code": lambda ev, v: ev.status == int(v),
    "http_status": lambda ev, v: ev.status == (None if v == "-" else int(v)),
    "body_bytes_sent": lambda ev, v: ev.bytes_out == (None if v == "-" else int(v)),
    "bytes": lambda ev, v: ev.bytes_out == int(v),
    "sent_bytes": lambda ev, v: ev.bytes_out == int(v),
    "bytes_read": lambda ev, v: ev.bytes_out == int(v),  # HAProxy: bytes read *by the client*
    "bytes_sent": lambda ev, v: ev.bytes_out == int(v),
    "received_bytes": lambda ev, v: ev.bytes_in == int(v),
    "bytes_received": lambda ev, v: ev.bytes_in == int(v),
    "http_user_agent": lambda ev, v: ev.user_agent == _none_if_dash(v),
    "http_referer": lambda ev, v: ev.referrer == _none_if_dash(v),
    "referrer": lambda ev, v: ev.referrer == _none_if_dash(v),
    "http_version": lambda ev, v: ev.http_version == v,
    "httpversion": lambda ev, v: ev.http_version == v,
    "remote_user": lambda ev, v: ev.user_name == _none_if_dash(v),
    "auth": lambda ev, v: ev.user_name == _none_if_dash(v),
    "target_fqdn": lambda ev, v: v in _host(ev),
    "http_host": lambda ev, v: ev.host == v,
    "host": lambda ev, v: ev.host == v,
    "port": lambda ev, v: ev.server_port == int(v),
    "http_port": lambda ev, v: ev.server_port == int(v),
    "ssl_protocol": lambda ev, v: ev.tls_version == (None if v == "-" else v.replace("TLSv", "")),
    "protocol": lambda ev, v: ev.scheme == {"h2": "https"}.get(v, v),
    "request_id": lambda ev, v: ev.request_id == v,
    "duration": lambda ev, v: ev.duration_ms == float(v),  # Envoy: milliseconds
    "request_duration_in_ms": lambda ev, v: ev.duration_ms == float(v),
    "x_forwarded_for": lambda ev, v: ev.forwarded_for == v,
    "time_local": lambda ev, v: abs((ev.timestamp - _ts(v)).total_seconds()) < 1,
    "timestamp": lambda ev, v: abs((ev.timestamp - _ts(v)).total_seconds()) < 1,
    "accept_date": lambda ev, v: ev.timestamp == _ts(v),
    "time": lambda ev, v: ev.timestamp == _ts(v),
    # ALB "type" is the client-side transport: http/ws plain, https/h2/wss/grpcs TLS.
    "type": lambda ev, v: ev.scheme == ("http" if v in ("http", "ws", "h2c") else "https"),
    "trace_id": lambda ev, v: ev.request_id == v,
    "user": lambda ev, v: ev.user_name == _none_if_dash(v),
    "time_duration": lambda ev, v: ev.duration_ms == float(v),  # HAProxy Ta, ms
}
# Per test directory: fields whose CrowdSec meaning differs from ours.
SKIP: dict[str, set[str]] = {
    # traefik JSON "Duration" is nanoseconds; CrowdSec files it as request_duration_in_ms.
    "traefik_json": {"request_duration_in_ms"},
    # Caddy's "status": 0 (no handler wrote a status) is kept as 0; CrowdSec agrees.
}


def crowdsec_expectations(test: str) -> Iterator[tuple[int, str, str]]:
    assert CORPUS is not None
    success: dict[int, bool] = {}
    text = (CORPUS / "crowdsec-hub" / test / "parser.assert").read_text(encoding="utf-8")
    for row in text.splitlines():
        s = SUCCESS.match(row)
        if s:
            success[int(s.group(1))] = s.group(2) == "true"
    for row in text.splitlines():
        m = ASSERT.match(row)
        if m is None or not success.get(int(m.group(1))):
            continue
        idx, _kind, field, raw = m.groups()
        yield int(idx), field, json.loads('"' + raw + '"')


@needs_corpus
@pytest.mark.parametrize("test", ASSERT_DIRS)
def test_fields_match_crowdsec(test: str) -> None:
    assert CORPUS is not None
    log = next(p for p in (CORPUS / "crowdsec-hub" / test).iterdir() if p.suffix == ".log")
    rel = str(log.relative_to(CORPUS))
    events = decode_all(rel)
    checked = 0
    failures: list[str] = []
    for idx, field, value in crowdsec_expectations(test):
        check = CHECKS.get(field)
        if check is None or field in SKIP.get(test, set()):
            continue
        ev = events[idx]
        if ev is None:
            assert NOT_A_REQUEST.search(lines_of(rel)[idx]), f"line {idx} did not parse"
            continue
        checked += 1
        if not check(ev, value):
            failures.append(f"line {idx}: {field} expected {value!r}, event: {ev}")
    assert not failures, "\n".join(failures[:10])
    assert checked >= 20


# --- Datadog's Kong pipeline test -------------------------------------------------------


def _mini_yaml(text: str) -> list[dict[str, Any]]:
    """Just enough YAML for kong_tests.yaml: ``- `` items of nested ``key: value`` maps."""
    tests: list[dict[str, Any]] = []
    stack: list[tuple[int, dict[str, Any]]] = []
    for raw in text.splitlines():
        if not raw.strip() or raw.strip().startswith('- "') or raw.strip() == "-":
            if raw.strip() == "-":
                item: dict[str, Any] = {}
                tests.append(item)
                stack = [(len(raw) - len(raw.lstrip()), item)]
            continue
        indent = len(raw) - len(raw.lstrip())
        key, _, value = raw.strip().partition(":")
        if not stack:
            continue
        while len(stack) > 1 and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        value = value.strip()
        if not value:
            child: dict[str, Any] = {}
            parent[key] = child
            stack.append((indent, child))
        else:
            parent[key] = json.loads(value) if value[0] in '"0123456789' else value
    return tests


@needs_corpus
def test_kong_expectations() -> None:
    assert CORPUS is not None
    text = (CORPUS / "datadog-integrations-core/kong/kong_tests.yaml").read_text("utf-8")
    tests = _mini_yaml(text)
    assert len(tests) == 5
    decode = build_decoder(FormatSpec("auto"), PassThroughRedactor(), "kong")
    for n, t in enumerate(tests):
        sample = str(t["sample"])
        ev = decode(Line("kong", f"kong-{n}", 0, 1, sample))
        custom = t["result"]["custom"]
        http = custom.get("http")
        if http is None or "method" not in http:
            assert ev is None, "a line without a request is not an event"
            continue
        assert ev is not None, sample
        assert ev.method == http["method"]
        assert ev.client_ip == custom["network"]["client"]["ip"]
        assert int(ev.timestamp.timestamp() * 1000) == custom["date_access"]
        assert ev.http_version == http["version"]
        url = str(http["url"])
        details = http["url_details"]
        if url.startswith("http://"):
            assert ev.scheme == details["scheme"]
            assert ev.host == details["host"]
            assert ev.server_port == details["port"]
            assert ev.path == details["path"]
        else:
            assert _target(ev) == url
            assert ev.path == details["path"]
        if "queryString" in details:
            q = details["queryString"]
            assert ev.query == "&".join(f"{k}={v}" for k, v in q.items())
        if "status_code" in http:
            assert ev.status == http["status_code"]
            assert ev.bytes_out == custom["network"]["bytes_written"]
        assert ev.referrer == http.get("referer")
        assert ev.user_agent == http.get("useragent")
        assert ev.user_name == http.get("auth")
        if n < 3:
            named = build_decoder(FormatSpec("kong"), PassThroughRedactor(), "kong")
            again = named(Line("kong", f"kong-{n}", 0, 1, sample))
            assert again is not None and again.path == ev.path and again.format == "kong"


# --- fail2ban: the blamed host -------------------------------------------------------------

FAIL2BAN = (
    "nginx-bad-request",
    "nginx-botsearch",
    "nginx-forbidden",
    "nginx-http-auth",
    "nginx-limit-req",
    "traefik-auth",
    "haproxy-http-auth",
)


@needs_corpus
@pytest.mark.parametrize("name", FAIL2BAN)
def test_fail2ban_hosts(name: str) -> None:
    assert CORPUS is not None
    decode = build_decoder(FormatSpec("auto"), PassThroughRedactor(), "f2b")
    expect: dict[str, object] | None = None
    checked = 0
    for n, raw in enumerate((CORPUS / "fail2ban" / name).read_text("utf-8").splitlines()):
        if raw.startswith("# failJSON:"):
            expect = json.loads(raw.split(":", 1)[1])
            continue
        if not raw.strip() or raw.startswith("#"):
            continue
        ev = decode(Line("f2b", name, n, n + 1, raw))
        if expect is not None and "host" in expect and ev is not None:
            assert ev.client_ip == expect["host"], raw
            checked += 1
        if ev is not None and name == "nginx-http-auth" and "password mismatch" in raw:
            assert ev.status == 401 and ev.user_name
        expect = None
    assert checked >= 2


def test_corpus_root_helper_is_a_path() -> None:
    assert CORPUS is None or isinstance(CORPUS, Path)
