"""Format decoders: hand-written samples, custom formats, JSON mappings, redaction calls,
auto-detection per file, and the promise never to raise."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from auditor.errors import ConfigError
from auditor.formats import (
    FORMAT_NAMES,
    FormatSpec,
    build_decoder,
    detect_format,
    parse_fields,
)
from auditor.formats.decoder import REDETECT_AFTER
from auditor.formats.event import FAST_EVENTS
from auditor.formats.registry import canonical
from auditor.model import Event, Exposure, Line
from auditor.normalize import PassThroughRedactor

SAMPLES = Path(__file__).parent / "samples"
PASS = PassThroughRedactor()


def line(text: str, file: str = "/var/log/x.log", offset: int = 0) -> Line:
    return Line("src", file, offset, offset + len(text) + 1, text)


def decode(text: str, fmt: str = "auto", **spec: Any) -> Event | None:
    return build_decoder(FormatSpec(fmt, **spec), PASS, "src")(line(text))


# --- samples ----------------------------------------------------------------------------


def _samples() -> list[tuple[str, int, str, str | None, str, dict[str, Any] | None]]:
    out: list[tuple[str, int, str, str | None, str, dict[str, Any] | None]] = []
    for path in sorted(SAMPLES.glob("*.log")):
        fmt, auto, expect, have = "auto", None, None, False
        for n, raw in enumerate(path.read_text("utf-8").splitlines(), 1):
            if raw.startswith("# format:"):
                fmt, auto = raw.split(":", 1)[1].strip(), None
            elif raw.startswith("# auto:"):
                auto = raw.split(":", 1)[1].strip()
            elif raw.startswith("# expect:"):
                expect, have = json.loads(raw.split(":", 1)[1]), True
            elif raw.startswith("#") or not raw.strip():
                continue
            else:
                assert have, f"{path.name}:{n} has no '# expect:' line"
                out.append((path.name, n, fmt, auto, raw, expect))
                expect, have, auto = None, False, None
    return out


SAMPLE_CASES = _samples()


@pytest.mark.parametrize(
    ("name", "lineno", "fmt", "auto", "text", "expect"),
    SAMPLE_CASES,
    ids=[f"{c[0]}:{c[1]}" for c in SAMPLE_CASES],
)
def test_samples(
    name: str, lineno: int, fmt: str, auto: str | None, text: str, expect: dict[str, Any] | None
) -> None:
    ev = decode(text, fmt)
    auto_ev = decode(text, "auto")
    if expect is None:
        assert ev is None and auto_ev is None
        return
    assert ev is not None, f"{name}:{lineno} did not parse as {fmt}"
    assert ev.format == fmt
    for key, want in expect.items():
        got = getattr(ev, key)
        if key == "timestamp":
            assert got == datetime.fromisoformat(want), key
        elif isinstance(want, float):
            assert got == pytest.approx(want), key
        else:
            assert got == want, f"{key}: {got!r} != {want!r}"
    assert auto_ev is not None, f"{name}:{lineno} did not parse with auto"
    assert auto_ev.format == (auto or canonical(fmt))
    assert dataclasses.replace(auto_ev, format=ev.format) == ev


def test_sample_files_are_many() -> None:
    assert len(SAMPLE_CASES) >= 45


# --- the public surface -------------------------------------------------------------------


def test_format_names() -> None:
    required = {
        "nginx-combined",
        "nginx-common",
        "apache-common",
        "clf",
        "apache-combined",
        "vhost-combined",
        "json",
        "aws-alb",
        "envoy",
        "haproxy",
        "traefik-clf",
        "caddy",
        "kong",
        "common",
        "combined",
        "traefik-json",
        "nginx-error",
    }
    assert required <= set(FORMAT_NAMES)
    assert "auto" not in FORMAT_NAMES
    assert all(n == n.lower() and " " not in n for n in FORMAT_NAMES)
    for name in FORMAT_NAMES:
        build_decoder(FormatSpec(name), PASS, "x")  # each builds


def test_format_spec_is_frozen_with_defaults() -> None:
    spec = FormatSpec("nginx-combined")
    assert (spec.log_format, spec.fields, spec.scheme) == (None, None, None)
    assert FormatSpec().name == "auto"
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "json"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (FormatSpec("nginx-combinde"), ["nginx-combinde", "known formats"]),
        (FormatSpec("nginx-combined", scheme="gopher"), ["gopher", "http"]),
        (FormatSpec("json", fields={"client_address": "ip"}), ["client_address"]),
        (FormatSpec("json", fields={"client_ip": ""}), ["client_ip"]),
        (FormatSpec("nginx-custom", log_format='$remote_addr "$request" $status'), ["time"]),
        (FormatSpec("nginx-custom", log_format="[$time_local] $status"), ["request"]),
        (FormatSpec("nginx-custom", log_format="no variables"), ["$variables"]),
        (FormatSpec("apache-custom", log_format="no directives"), ["%directives"]),
        (FormatSpec("nginx-custom", log_format="{}"), ["time"]),
        (FormatSpec("nginx-custom"), ["log_format"]),
    ],
)
def test_bad_specs_raise_config_error(spec: FormatSpec, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        build_decoder(spec, PASS, "src")
    for word in words:
        assert word in str(err.value)


# --- events ---------------------------------------------------------------------------------

COMBINED = (
    '203.0.113.9 - - [20/Nov/2026:08:00:01 +0000] "GET /a/1?x=1 HTTP/1.1" 200 5 '
    '"https://ref.example/" "curl/8"'
)


def test_events_are_genuine_frozen_events() -> None:
    assert FAST_EVENTS, "Event changed shape: update auditor/formats/event.py _FIELDS"
    ev = decode(COMBINED, "nginx-combined")
    assert ev is not None and type(ev) is Event
    assert ev == Event(**{f.name: getattr(ev, f.name) for f in dataclasses.fields(Event)})
    assert hash(ev) == hash(dataclasses.replace(ev))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.path = "/x"  # type: ignore[misc]
    assert ev.file == "/var/log/x.log" and ev.offset == 0 and ev.source == "src"


def test_configured_scheme_fills_in_but_does_not_override() -> None:
    ev = decode(COMBINED, "nginx-combined", scheme="https")
    assert ev is not None and ev.scheme == "https"
    absolute = COMBINED.replace("GET /a/1?x=1", "GET http://h.example/a")
    ev = decode(absolute, "nginx-combined", scheme="https")
    assert ev is not None and ev.scheme == "https" and ev.host == "h.example"
    ev = decode(absolute, "nginx-combined")
    assert ev is not None and ev.scheme == "http"
    alb = (SAMPLES / "proxies.log").read_text().splitlines()[2]
    ev = decode(alb, "aws-alb", scheme="https")  # the format says http: it wins
    assert ev is not None and ev.scheme == "http"


def test_time_zones_are_not_mixed_up_by_the_cache() -> None:
    a = decode(COMBINED, "nginx-combined")
    b = decode(COMBINED.replace("+0000", "+0200"), "nginx-combined")
    assert a is not None and b is not None
    assert (a.timestamp - b.timestamp).total_seconds() == 7200


class Recording:
    """A redactor that marks what it touched and reports one exposure per call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def _exp(self, where: str) -> tuple[Exposure, ...]:
        return (Exposure("email", where, None, "j***@example.org", "d" + where),)

    def redact_target(
        self, path: str, query: str | None
    ) -> tuple[str, str | None, tuple[Exposure, ...]]:
        self.calls.append(("target", f"{path}?{query}"))
        return f"R({path})", None if query is None else f"R({query})", self._exp("query")

    def redact_url(self, url: str, location: str) -> tuple[str, tuple[Exposure, ...]]:
        self.calls.append((location, url))
        return f"R({url})", self._exp(location)

    def redact_text(self, text: str) -> str:
        self.calls.append(("text", text))
        return f"R({text})"

    def redact_user(self, name: str) -> str:
        self.calls.append(("user", name))
        return f"R({name})"


@pytest.mark.parametrize(
    ("fmt", "text", "spec"),
    [
        (
            "nginx-combined",
            '192.0.2.1 - bob [20/Nov/2026:08:00:01 +0000] "GET /p?q=1 HTTP/1.1" 200 5 "http://r/" "ua"',
            {},
        ),
        (  # the lenient path (escaped quote)
            "apache-combined",
            '192.0.2.1 - bob [20/Nov/2026:08:00:01 +0000] "GET /p?q=1 HTTP/1.1" 200 5 "http://r/" "u\\"a"',
            {},
        ),
        (
            "json",
            (
                '{"time_iso8601":"2026-11-20T08:00:01Z","remote_addr":"192.0.2.1",'
                '"remote_user":"bob","request":"GET /p?q=1 HTTP/1.1","status":200,'
                '"http_referer":"http://r/","http_user_agent":"ua"}'
            ),
            {},
        ),
        (
            "nginx-custom",
            '192.0.2.1 bob [20/Nov/2026:08:00:01 +0000] "GET /p?q=1 HTTP/1.1" 200 "http://r/" "ua"',
            {
                "log_format": '$remote_addr $remote_user [$time_local] "$request" $status '
                '"$http_referer" "$http_user_agent"'
            },
        ),
    ],
)
def test_every_sensitive_value_goes_through_the_redactor(
    fmt: str, text: str, spec: dict[str, Any]
) -> None:
    rec = Recording()
    ev = build_decoder(FormatSpec(fmt, **spec), rec, "src")(line(text))
    assert ev is not None
    kinds = [k for k, _v in rec.calls]
    assert sorted(kinds) == ["referer", "target", "text", "user"]
    assert ev.path == "R(/p)" and ev.query == "R(q=1)"
    assert ev.referrer == "R(http://r/)" and ev.user_name == "R(bob)"
    assert ev.user_agent is not None and ev.user_agent.startswith("R(u")
    assert [e.location for e in ev.exposures] == ["query", "referer"]
    assert ev.route == "{other}"  # built from the redacted path "R(/p)"


def test_absent_values_skip_the_redactor() -> None:
    rec = Recording()
    text = '192.0.2.1 - - [20/Nov/2026:08:00:01 +0000] "GET / HTTP/1.1" 200 5 "-" "-"'
    ev = build_decoder(FormatSpec("nginx-combined"), rec, "src")(line(text))
    assert ev is not None and [k for k, _v in rec.calls] == ["target"]
    assert ev.user_name is None and ev.referrer is None and ev.user_agent is None


def test_a_failing_redactor_does_not_escape_the_decoder() -> None:
    class Broken(PassThroughRedactor):
        def redact_text(self, text: str) -> str:
            raise RuntimeError("boom")

    dec = build_decoder(FormatSpec("nginx-combined"), Broken(), "src")
    assert dec(line(COMBINED)) is None


# --- custom formats -------------------------------------------------------------------------

NGINX_FMT = (
    "$remote_addr:$remote_port - $remote_user [$time_local] $scheme://$host:$server_port "
    '"$request_method $request_uri $server_protocol" $status $body_bytes_sent $request_length '
    '$request_time "$upstream_response_time" "$http_referer" "$http_user_agent" '
    '"$http_x_forwarded_for" $ssl_protocol $request_id $pipe $connection'
)


def test_nginx_log_format() -> None:
    text = (
        "192.0.2.7:51234 - - [20/Nov/2026:08:00:01 +0000] https://api.example.com:443 "
        '"POST /v1/login?next=%2F HTTP/2.0" 401 48 731 0.004 "0.003, 0.001" "-" '
        '"okhttp/4.12" "198.51.100.1" TLSv1.3 7f3a9b0c1d2e3f405162738495a6b7c8 . 12345'
    )
    ev = decode(text, "nginx-custom", log_format=NGINX_FMT)
    assert ev is not None
    assert (ev.client_ip, ev.client_port, ev.scheme, ev.host, ev.server_port) == (
        "192.0.2.7",
        51234,
        "https",
        "api.example.com",
        443,
    )
    assert (ev.method, ev.path, ev.query, ev.http_version) == (
        "POST",
        "/v1/login",
        "next=%2F",
        "2.0",
    )
    assert (ev.status, ev.bytes_out, ev.bytes_in) == (401, 48, 731)
    assert ev.duration_ms == pytest.approx(4.0)
    assert (ev.tls_version, ev.forwarded_for, ev.user_agent) == (
        "1.3",
        "198.51.100.1",
        "okhttp/4.12",
    )
    assert ev.request_id == "7f3a9b0c1d2e3f405162738495a6b7c8" and ev.format == "nginx-custom"
    fields = parse_fields(FormatSpec("nginx-custom", log_format=NGINX_FMT), text)
    assert fields is not None and fields["status"] == "401" and fields["scheme"] == "https"
    assert decode(text.replace(" 401 ", " abc "), "nginx-custom", log_format=NGINX_FMT) is None


def test_nginx_log_format_as_pasted_from_nginx_conf() -> None:
    pasted = (
        "'$remote_addr - $remote_user [$time_local] \"$request\" '\n"
        "                    '$status $body_bytes_sent \"$http_referer\" '\n"
        "                    '\"$http_user_agent\" $https $msec';"
    )
    text = '192.0.2.8 - - [20/Nov/2026:08:00:01 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8"  1763625601.123'
    ev = decode(text, "nginx-custom", log_format=pasted)
    assert ev is not None and ev.scheme == "http" and ev.user_agent == "curl/8"
    assert ev.timestamp == datetime.fromisoformat("2026-11-20T08:00:01+00:00")  # $time_local wins


def test_nginx_escape_json_log_format() -> None:
    fmt = (
        'escape=json \'{"ts":"$time_iso8601","ip":"$remote_addr","req":"$request",'
        '"st":$status,"ua":"$http_user_agent","proto":"$scheme"}\''
    )
    text = '{"ts":"2026-11-20T08:00:01+00:00","ip":"192.0.2.9","req":"GET /x HTTP/1.1","st":200,"ua":"u","proto":"https"}'
    ev = decode(text, "nginx-custom", log_format=fmt)
    assert ev is not None and (ev.client_ip, ev.path, ev.status, ev.scheme) == (
        "192.0.2.9",
        "/x",
        200,
        "https",
    )


APACHE_FMT = (
    '%a %{c}a %l %u %t "%m %U%q %H" %>s %b %D %{HTTPS}e %{SSL_PROTOCOL}x "%{Referer}i" '
    '"%{User-Agent}i" "%{X-Forwarded-For}i" %{UNIQUE_ID}e %V %p %{remote}p %L %%'
)


def test_apache_log_format() -> None:
    text = (
        '192.0.2.10 10.0.0.2 - - [20/Nov/2026:08:00:01 +0000] "GET /a/9?x=1 HTTP/1.1" 304 - 1500 '
        'on TLSv1.2 "-" "Mozilla/5.0 \\"x\\"" "192.0.2.10" ZzYyXx shop.example.com 443 50000 AAAB %'
    )
    ev = decode(text, "apache-custom", log_format=APACHE_FMT)
    assert ev is not None
    assert (ev.client_ip, ev.method, ev.path, ev.query, ev.route) == (
        "192.0.2.10",
        "GET",
        "/a/9",
        "x=1",
        "/a/{id}",
    )
    assert (ev.status, ev.bytes_out, ev.duration_ms) == (304, None, 1.5)
    assert (ev.scheme, ev.tls_version, ev.host, ev.server_port, ev.client_port) == (
        "https",
        "1.2",
        "shop.example.com",
        443,
        50000,
    )
    assert ev.user_agent == 'Mozilla/5.0 \\"x\\"' and ev.request_id == "ZzYyXx"
    assert ev.format == "apache-custom"


def test_apache_log_format_pasted_with_escaped_quotes_and_vhost() -> None:
    fmt = '%v:%p %h %l %u %t \\"%r\\" %>s %O \\"%{Referer}i\\" \\"%{User-Agent}i\\"'
    text = 'www.example.com:80 192.0.2.11 - - [20/Nov/2026:08:00:01 +0000] "GET / HTTP/1.1" 200 5 "-" "-"'
    ev = decode(text, "apache-custom", log_format=fmt)
    assert ev is not None and (ev.host, ev.server_port, ev.bytes_out) == ("www.example.com", 80, 5)


@pytest.mark.parametrize(
    ("fmt", "text", "iso"),
    [
        (
            '%h [%{%Y-%m-%dT%H:%M:%S%z}t] "%r" %>s %{msec_frac}t',
            '192.0.2.1 [2026-11-20T09:00:01+0100] "GET / HTTP/1.1" 200 123',
            "2026-11-20T08:00:01+00:00",
        ),
        (
            '%h %{msec}t "%r" %>s',
            '192.0.2.1 1763625601123 "GET / HTTP/1.1" 200',
            "2025-11-20T08:00:01.123+00:00",
        ),
        (
            '%h %{end:sec}t "%r" %>s',
            '192.0.2.1 1763625601 "GET / HTTP/1.1" 200',
            "2025-11-20T08:00:01+00:00",
        ),
    ],
)
def test_apache_time_directives(fmt: str, text: str, iso: str) -> None:
    ev = decode(text, "apache-custom", log_format=fmt)
    assert ev is not None and ev.timestamp == datetime.fromisoformat(iso)


def test_log_format_kind_is_guessed_from_syntax() -> None:
    ev = decode(
        '192.0.2.12 [20/Nov/2026:08:00:01 +0000] "GET / HTTP/1.1" 200',
        "auto",
        log_format='%h %t "%r" %>s',
    )
    assert ev is not None and ev.format == "apache-custom"


# --- JSON with a user mapping ---------------------------------------------------------------


def test_json_fields_mapping_with_dotted_paths() -> None:
    fields = {
        "timestamp": "meta.ts",
        "client_ip": "peer.addr",
        "method": "req.m",
        "path": "req.p",
        "query": "req.q",
        "status": "res.code",
        "duration_ms": "res.ms",
        "user_agent": "req.headers.ua",
        "scheme": "x.proto",
    }
    text = json.dumps(
        {
            "meta": {"ts": 1763625601.5},
            "peer": {"addr": "192.0.2.13"},
            "req": {"m": "PUT", "p": "/v2/items/77", "q": "a=b", "headers": {"ua": ["k6/0.5"]}},
            "res": {"code": 201, "ms": 12.5},
            "x.proto": "https",
        }
    )
    ev = decode(text, "json", fields=fields)
    assert ev is not None
    assert (ev.client_ip, ev.method, ev.path, ev.query, ev.route) == (
        "192.0.2.13",
        "PUT",
        "/v2/items/77",
        "a=b",
        "/v2/items/{id}",
    )
    assert (ev.status, ev.duration_ms, ev.user_agent, ev.scheme) == (201, 12.5, "k6/0.5", "https")
    assert ev.timestamp == datetime.fromisoformat("2025-11-20T08:00:01.500000+00:00")


# --- auto mode ------------------------------------------------------------------------------


def test_auto_sticks_per_file_and_redetects_on_change() -> None:
    dec = build_decoder(FormatSpec("auto"), PASS, "src")
    caddy = (SAMPLES / "json.log").read_text().splitlines()[2]
    alb = (SAMPLES / "proxies.log").read_text().splitlines()[2]
    a1 = dec(line(COMBINED, "/a.log"))
    b1 = dec(line(alb, "/b.log"))
    a2 = dec(line(COMBINED, "/a.log"))
    # The file changed format (e.g. after rotation): lines that do not fit the chosen
    # format are unparsed until REDETECT_AFTER of them in a row make auto look again.
    after = [dec(line(caddy, "/a.log")) for _ in range(REDETECT_AFTER + 1)]
    assert [e.format if e else None for e in (a1, b1, a2, *after)] == [
        "combined",
        "aws-alb",
        "combined",
        *[None] * (REDETECT_AFTER - 1),
        "caddy",
        "caddy",
    ]
    choices = {(c.file, c.format, c.previous) for c in dec.take_choices()}
    assert choices == {("/a.log", "caddy", "combined"), ("/b.log", "aws-alb", None)}


def test_named_format_also_finds_wrappers_per_file() -> None:
    dec = build_decoder(FormatSpec("nginx-combined"), PASS, "src")
    assert dec(line("<13>Nov 20 08:09:00 web1 nginx: " + COMBINED, "/s.log")) is not None
    assert dec(line("<13>Nov 20 08:09:01 web1 nginx: " + COMBINED, "/s.log")) is not None
    assert dec(line(COMBINED, "/s.log")) is not None  # the wrapper went away
    assert dec(line('{"a": 1}', "/s.log")) is None


def test_detect_format() -> None:
    assert detect_format([]) is None
    assert detect_format(["", "# comment", "garbage"]) is None
    sample = [COMBINED] * 3 + ['192.0.2.1 - - [20/Nov/2026:08:00:01 +0000] "GET / HTTP/1.1" 200 5']
    assert detect_format(sample) == "combined"
    assert detect_format(["<13>Nov 20 08:09:00 web1 nginx: " + COMBINED]) == "combined"


def test_parse_fields() -> None:
    fields = parse_fields(FormatSpec("auto"), COMBINED)
    assert fields is not None
    assert fields["client"] == "203.0.113.9" and fields["request"] == "GET /a/1?x=1 HTTP/1.1"
    assert fields["referrer"] == "https://ref.example/" and fields["user_agent"] == "curl/8"
    assert parse_fields(FormatSpec("nginx-combined"), "2026-11-20T08:09:04Z stdout F " + COMBINED)
    assert parse_fields(FormatSpec("auto"), "garbage") is None
    assert parse_fields(FormatSpec("haproxy"), COMBINED) is None
    caddy = (SAMPLES / "json.log").read_text().splitlines()[2]
    cf = parse_fields(FormatSpec("auto"), caddy)
    assert cf is not None and cf["tls_version"] == "772" and cf["scheme"] == "https"


# --- never raise --------------------------------------------------------------------------------

NASTY = [
    "",
    " ",
    "\x00" * 100,
    '"' * 1000,
    "[" * 5000 + "]",
    "{" * 3000,
    '{"log": 1}',
    '{"request": {"tls": 5}, "ts": "x", "logger": 3}',
    '{"RequestMethod": ["GET"], "StartUTC": 10e400}',
    '{"time": 1e308, "method": "GET", "path": "/"}',
    '{"time": "9999-12-31T23:59:59-23:59", "method": "GET", "path": "/"}',
    '\ufffd\ufffd\ufffd - - [\ufffd] "\ufffd" 200 1',
    '1.2.3.4 - - [31/Dec/9999:23:59:59 -2359] "GET / HTTP/1.1" 200 1',
    '1.2.3.4 - - [01/Jan/0001:00:00:00 +2359] "GET / HTTP/1.1" 200 1',
    '1.2.3.4 - - [20/Nov/2026:08:00:01 +0000] "GET ' + "/a" * 500_000 + ' HTTP/1.1" 200 1',
    "x" * 3_000_000,
    "http 2026 " + "a " * 100_000,
    "<13>" * 10_000,
    "2026/11/20 08:00:01 [error] 1#1: , client: , client: " * 1000,
]


@pytest.mark.parametrize("fmt", ["auto", *sorted({canonical(n) for n in FORMAT_NAMES})])
def test_nasty_input_never_raises(fmt: str) -> None:
    dec = build_decoder(FormatSpec(fmt), PASS, "src")
    for text in NASTY:
        ev = dec(line(text))
        assert ev is None or isinstance(ev, Event)
    assert parse_fields(FormatSpec(fmt), NASTY[3]) is None


def test_with_the_real_redactor_no_raw_secret_reaches_the_event() -> None:
    redact = pytest.importorskip("auditor.redact")
    redactor = redact.Redactor(b"k" * 32)
    pan, email = "4111111111111111", "jane.doe@example.org"
    lines = [
        (
            f'192.0.2.1 - - [20/Nov/2026:08:00:01 +0000] "GET /pay?card={pan}&u={email} HTTP/1.1" '
            f'200 5 "https://shop.example.com/?e={email}" "bot ({email})"'
        ),
        (
            f'{{"time_iso8601":"2026-11-20T08:00:01Z","remote_addr":"192.0.2.1","request":'
            f'"GET /pay?card={pan} HTTP/1.1","status":200,"remote_user":"{email}"}}'
        ),
    ]
    for text in lines:
        ev = build_decoder(FormatSpec("auto"), redactor, "src")(line(text))
        assert ev is not None
        flat = repr(ev)
        assert pan not in flat and email not in flat
        assert {e.pii_type for e in ev.exposures} >= {"pan"}
