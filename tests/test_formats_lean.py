"""Decoders that skip the raw-field dict (or fields no event reads) give the very events
the plain way gives: ``build_event`` over every field ``explain`` shows. Random lines
(hypothesis) as well as the odd cases the formats' own tests use."""

from __future__ import annotations

import ast
import inspect
import textwrap
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.formats import event as event_module
from auditor.formats import jsonfmt
from auditor.formats.event import DictParser, assemble_inline, build_event
from auditor.formats.jsonfmt import (
    _MAX_SHAPES,
    GENERIC,
    SCHEMAS,
    JsonDecode,
    JsonParser,
    Schema,
    Shaped,
    _decoder_via_dict,
    _merge,
    compile_decoder,
    decoder_for,
    user_schema,
)
from auditor.formats.proxies import EnvoyTextParser, HaproxyParser
from auditor.formats.spec import RAW_KEYS, Ctx, Parser
from auditor.formats.times import MONTHS, TIME_CACHE, _parse_uncached, parse_time
from auditor.formats.w3c import DEFAULTS, Layout, W3cParser, header_layout, raw_fields
from auditor.model import Event, Line
from auditor.redact import Redactor

REDACTOR = Redactor(b"k" * 32)


def plain_and_lean(parser: Parser, text: str) -> tuple[Event | None, Event | None]:
    """(event through ``fields`` + ``build_event``, event through the parser's ``bind``)."""
    line = Line("src", "/var/log/x.log", 10, 10 + len(text) + 1, text)
    ctx = Ctx("src", REDACTOR, None)
    plain = DictParser.bind(parser, ctx)(text, line)  # type: ignore[arg-type]
    return plain, parser.bind(ctx)(text, line)


def assert_same(parser: Parser, text: str) -> Event | None:
    plain, lean = plain_and_lean(parser, text)
    assert lean == plain, text
    return lean


# --- HAProxy ------------------------------------------------------------------------------

HAPROXY_LINES = [
    (
        "192.0.2.60:53332 [20/Nov/2026:08:04:48.143] prod_http_in~ bk_admin/nginx 0/0/7/1457/1487"
        ' 200 11394 - - ---- 2/1/0/0/0 0/0 {Mozilla/5.0} {} "GET /admin?survey=130 HTTP/1.1"'
    ),
    (
        "2001:db8::1234:58430 [20/Nov/2026:08:04:50.608] main main/<NOSRV> -1/-1/-1/-1/0 401 248"
        ' - - PR-- 0/0/0/0/0 0/0 "GET / HTTP/1.1"'
    ),
    (
        "[2001:db8::1]:443 [20/Nov/2026:08:04:50] fe be/s 0/0/1/2/+3 -1 +0 - - ---- 1/1/1/1/+1"
        ' 0/0 "GET /x?token=abc HTTP/1.1'
    ),
    (
        "-:1 [1/Nov/2026:08:04:50.6] fe be/s 0/0/1/2/-1 503 0 - - sC-- 1/1/1/1/1 0/0"
        ' {a\\}b|c} "<BADREQ>"'
    ),
    (
        "192.0.2.1:x [20/Nov/2026:08:04:50.123456789] fe be/s 0/0/1/2/3 200 5 - - ---- 1/1/1/1/1"
        ' 0/0 """'
    ),
    (
        "192.0.2.1:80 [20/Nov/2026:08:04:48.143] fe be/s 0/0/1/2/3 200 5 - - ---- 1/1/1/1/1 0/0 "
        '"GET /a HTTP/1.1" trailing"'
    ),
    (
        ":80 [31/Feb/2026:08:04:48.143] fe be/s 0/0/1/2/3 200 5 - - ---- 1/1/1/1/1 0/0 "
        '"GET http://h.example:8080/p?q=1 HTTP/1.0"'
    ),
    (
        "192.0.2.1:80 [20/Nov/2026:08:04:48.1] fe be/s 0/0/1/2/3 200 5 - - ---- 1/1/1/1/1 0/0 "
        '"GET /a HTTP/1.1"\n'
    ),
]


def test_haproxy_events_are_the_same_without_the_dict() -> None:
    events = [assert_same(HaproxyParser(), text) for text in HAPROXY_LINES]
    assert sum(e is not None for e in events) >= 5
    ev = events[0]
    assert ev is not None
    assert (ev.client_ip, ev.client_port, ev.scheme, ev.duration_ms) == (
        "192.0.2.60",
        53332,
        "https",
        1487.0,
    )
    assert ev.timestamp == datetime(2026, 11, 20, 8, 4, 48, 143000, UTC)


_TOKEN = st.text(st.sampled_from("ab-~:19[]."), min_size=1, max_size=6)
_NUM = st.sampled_from(["0", "12", "-1", "+3", "007", "x"])


@settings(max_examples=300, deadline=None)
@given(
    client=st.sampled_from(
        ["192.0.2.1:80", "2001:db8::1:443", "[::1]:8", "-:1", "h:", "a:b:c", "1.2.3.4", ":9"]
    ),
    day=st.sampled_from(["1", "01", "20", "31", "x1"]),
    frac=st.sampled_from(["", ".1", ".143", ",5", ".123456789", ".1234567890", "."]),
    frontend=_TOKEN,
    ta=_NUM,
    status=_NUM,
    nbytes=_NUM,
    headers=st.sampled_from(["", " {a|b}", " {x\\}y} {}", " {"]),
    request=st.text(st.sampled_from('GET /a?b=1 HTTP/1."\\'), max_size=30),
)
def test_haproxy_random_lines_decode_alike(
    client: str,
    day: str,
    frac: str,
    frontend: str,
    ta: str,
    status: str,
    nbytes: str,
    headers: str,
    request: str,
) -> None:
    text = (
        f"{client} [{day}/Nov/2026:08:04:48{frac}] {frontend} be/s 0/0/1/2/{ta} {status}"
        f' {nbytes} - - ---- 1/1/1/1/1 0/0{headers} "{request}'
    )
    assert_same(HaproxyParser(), text)


# --- Envoy text ---------------------------------------------------------------------------

ENVOY_LINES = [
    (
        '[2026-11-20T08:05:00.310Z] "POST /api/v1/locations HTTP/2" 204 - 154 0 226 100'
        ' "192.0.2.70, 10.42.0.1" "nsq2http" "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2"'
        ' "api.example.com" "tcp://10.0.2.1:80"'
    ),
    (
        '[2026-11-20T08:05:01.000Z] "GET /productpage HTTP/1.1" 200 - via_upstream - "-" 0 612 10'
        ' 9 "-" "curl/8.0" "5b1c6e27-0000-4a6c-b1cd-52e4b8a20c1d" "bookinfo.example.com"'
        ' "10.1.1.8:9080" outbound|9080||productpage 10.1.1.5:46420 10.1.1.5:443'
        " 192.0.2.71:40122 bookinfo.example.com default"
    ),
    (
        '[2026-11-20T08:05:01.000Z] "GET /p?token=x HTTP/1.1" - UF 0 - - - "192.0.2.9" "-" "-"'
        ' "-" "-"'
    ),
    (
        '[2026-11-20T08:05:01+01:00] "GET /p HTTP/1.1" 200 - 0 5 1 1 " 192.0.2.9 " "a\\"b" "r"'
        ' "h:8080" "u" x y'
    ),
    '[2026-11-20T08:05:01Z] "-" 400 DC 0 0 0 - "[2001:db8::1]:5" "ua" "r" "h" "u"',
    '[2026-11-20T08:05:01Z] "GET / HTTP/1.1" 200 - 0 0 0 - "-" "ua" "r" "h" "u" a b c d -',
]


def test_envoy_text_events_are_the_same_without_the_dict() -> None:
    events = [assert_same(EnvoyTextParser(), text) for text in ENVOY_LINES]
    assert all(e is not None for e in events)
    first, istio = events[0], events[1]
    assert first is not None and istio is not None
    assert (first.client_ip, first.forwarded_for) == ("192.0.2.70", "192.0.2.70, 10.42.0.1")
    assert (istio.client_ip, istio.client_port, istio.scheme) == ("192.0.2.71", 40122, "https")


_FIELD = st.text(st.sampled_from('ab1.:,- [] "\\'), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    status=st.sampled_from(["200", "-", "0", "999"]),
    istio=st.sampled_from(["", ' via_upstream - "-"', ' a b "c\\"d"']),
    numbers=st.lists(st.sampled_from(["0", "12", "-"]), min_size=3, max_size=3),
    quoted=st.lists(_FIELD, min_size=5, max_size=5),
    rest=st.lists(st.sampled_from(["-", "a", "192.0.2.1:80", "[::1]:9", "h.example"]), max_size=7),
)
def test_envoy_text_random_lines_decode_alike(
    status: str, istio: str, numbers: list[str], quoted: list[str], rest: list[str]
) -> None:
    q = " ".join(f'"{v}"' for v in quoted)
    tail = "".join(" " + t for t in rest)
    text = (
        f'[2026-11-20T08:05:01.5Z] "GET /a?b=1 HTTP/1.1" {status} -{istio}'
        f" {numbers[0]} {numbers[1]} {numbers[2]} 7 {q}{tail}"
    )
    assert_same(EnvoyTextParser(), text)


# --- W3C / IIS / CloudFront ---------------------------------------------------------------

IIS_FIELDS = (
    "date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip"
    " cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken"
)
IIS_RESTART = (
    "date time cs-method cs-uri-stem cs-uri-query c-ip c-port cs-version cs-host"
    " sc-status sc-bytes cs-bytes time-taken X-Forwarded-For cs-host x-host-header"
)
CF_VALUES = (
    "2026-11-20 08:01:02 FRA56-P1 392 192.0.2.100 GET d111.cloudfront.net /index.html 304"
    " https://ref.example/?a=1 Mozilla/5.0%20(X11) q=1&token=x - Hit"
    " SOX4xwn4XV6Q4rgb7XiVGOHms_BGlTAC4KyHmureZmBNrjGdRLiNIQ== www.example.com https 23 0.001"
    " 198.51.100.1,%20192.0.2.9 TLSv1.3 TLS_AES_128_GCM_SHA256 Hit HTTP/2.0 - - 11040 0.001"
    " Hit text/html 78 - -"
)


def w3c_same(lay: Layout, text: str, kind_names: bool = False) -> Event | None:
    """The bound decoder's event for ``text`` under ``lay`` against ``build_event`` over
    ``raw_fields`` (what explain shows)."""
    parser = W3cParser("w3c", kind_names=kind_names)
    line = Line("src", "/var/log/x.log", 10, 10 + len(text) + 1, text)
    ctx = Ctx("src", REDACTOR, None)
    bound = parser.bind(ctx)
    bound.layouts[line.file] = lay
    raw = raw_fields(lay, text)
    name = lay.kind if kind_names else "w3c"
    plain = None if raw is None else build_event(raw, ctx, line, name)
    lean = bound(text, line)
    assert lean == plain, text
    return lean


def test_w3c_events_are_the_same_without_the_dict() -> None:
    iis, restart, cf = (header_layout("#Fields: " + f) for f in (IIS_FIELDS, IIS_RESTART, ""))
    assert iis is not None and restart is not None and cf is None
    cases = [
        (iis, ("2026-11-20 08:00:01 10.0.0.5 GET /default.aspx id=7 443 - 192.0.2.10"
              " Mozilla/5.0+(Windows+NT+10.0) https://ref.example/ 200 0 0 15")),
        (iis, ("2026-11-20 08:00:02 10.0.0.5 POST /login.aspx - 443 alice 192.0.2.11 curl/8.4"
              " - 401 1 0 3\r")),
        (iis, "2026-11-20 08:00:02 10.0.0.5 get /x - 443 - 192.0.2.11 - - 200 0 0 3"),
        (iis, "2026-11-20 08:00:02 10.0.0.5 GET /x - 443 - 192.0.2.11 - - 2x0 0 0 3"),
        (iis, "2026-11-20 08:00:02.5 10.0.0.5 GET /x - 443 - 192.0.2.11 - - - 0 0 -"),
        (iis, "2026-11-20 8:00:02 10.0.0.5 GET /x - 443 - 192.0.2.11 - - 200 0 0 3"),
        (restart, ("2026-11-20\t09:00:00\tGET\t/api/v1/items\tq=1\t192.0.2.12\t50123"
                  "\tHTTP/1.1\tshop.example.com\t200\t5120\t310\t42\t198.51.100.7"
                  "\tother.example\tvia.example:8443")),
        (DEFAULTS["cloudfront"], CF_VALUES.replace(" ", "\t")),
        (DEFAULTS["cloudfront"], CF_VALUES.replace("Mozilla/5.0%20(X11)", "-")),
    ]  # fmt: skip
    events = [w3c_same(lay, text, kind_names=True) for lay, text in cases]
    assert sum(e is not None for e in events) >= 6
    assert events[0] is not None and events[0].user_agent == "Mozilla/5.0 (Windows NT 10.0)"


@settings(max_examples=300, deadline=None)
@given(
    cols=st.lists(st.sampled_from(IIS_RESTART.split() + IIS_FIELDS.split()), max_size=8),
    values=st.lists(
        st.sampled_from(["-", "", "GET", "x", "200", "a+b%20c", "192.0.2.1", "h:80", "1.5"]),
        min_size=18,
        max_size=18,
    ),
    cloudfront=st.booleans(),
    tabs=st.booleans(),
)
def test_w3c_random_layouts_decode_alike(
    cols: list[str], values: list[str], cloudfront: bool, tabs: bool
) -> None:
    columns = ["date", "time", "cs-method", *cols] + (["x-edge-location"] if cloudfront else [])
    lay = header_layout("#Fields: " + " ".join(columns))
    assert lay is not None
    row = ["2026-11-20", "08:00:01", "GET", *values][: len(columns)]
    row += ["-"] * (len(columns) - len(row))
    w3c_same(lay, ("\t" if tabs else " ").join(row))


# --- times --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    when=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    digits=st.text(st.sampled_from("0123456789"), min_size=0, max_size=11),
    sep=st.sampled_from([".", ",", ":", " "]),
    tail=st.sampled_from(["", " +0100", "Z", "]", "x"]),
)
def test_clf_time_with_a_fraction_reads_as_before(
    when: datetime, digits: str, sep: str, tail: str
) -> None:
    """The per-second memo gives what the regex parse of the whole text gives."""
    mon = next(k for k, v in MONTHS.items() if v == when.month)
    text = f"{when.day:02d}/{mon}/{when.year:04d}:{when:%H:%M:%S}{sep}{digits}{tail}"
    for _ in range(2):  # the second time from the memo
        try:
            expected = _parse_uncached(text)
        except (ValueError, OverflowError):
            expected = None
        assert parse_time(text) == expected
        parse_time_cache_clear()


def parse_time_cache_clear() -> None:
    TIME_CACHE.clear()


def test_clf_time_with_a_fraction_edge_cases() -> None:
    for text in [
        "20/Nov/2026:08:04:48.١٢٣",  # non-ASCII digits: the regex path decides
        "20/Nov/2026:08:04:48.",
        "2x/Nov/2026:08:04:48.1",
        "20/Nov/2026:08:04:4x.1",
        "20/Nov/2026:08:04:48.1234567890",
        "20/Xyz/2026:08:04:48.1",
        "29/Feb/2025:08:04:48.1",
    ]:
        parse_time_cache_clear()
        try:
            expected = _parse_uncached(text)
        except (ValueError, OverflowError):
            expected = None
        assert parse_time(text) == expected, text


# --- JSON: the generic schema's decoder per record shape ----------------------------------

_GENERIC_KEYS = sorted({lk for _k, lks in GENERIC for lk in lks if isinstance(lk, str)})
_JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2_000_000_000_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            "-",
            "GET",
            "GET /a?token=s HTTP/1.1",
            "/p?q=1",
            "192.0.2.1",
            "[2001:db8::1]:80",
            "20/Nov/2026:08:04:48 +0000",
            "2026-11-20T08:04:48.5Z",
            "1763625888.123",
            "200",
            "on",
            "https",
            "h.example:8443",
        ]
    ),
    st.lists(st.sampled_from(["a", "GET", "200"]), max_size=2),
    st.just({"x": 1}),
)
_EXTRAS = st.dictionaries(
    st.sampled_from([*_GENERIC_KEYS, "other", "a.b"]), _JSON_VALUES, max_size=14
)
_TIMES = st.sampled_from(["20/Nov/2026:08:04:48 +0000", "2026-11-20T08:04:48.5Z", 1763625888])
_REQUESTS = st.sampled_from(["GET /a?token=s HTTP/1.1", "/p?q=1", "GET", "-", None])


@st.composite
def _records(draw: st.DrawFn) -> dict[str, Any]:
    """A record with a time and something of a request most of the time, other keys
    (every spelling of the generic schema, odd values) around them in any order."""
    head = {
        draw(st.sampled_from(["time_local", "time_iso8601", "msec", "ts"])): draw(_TIMES),
        draw(st.sampled_from(["request", "request_uri", "uri", "method", "path"])): draw(_REQUESTS),
    }
    extra = draw(_EXTRAS)
    return {**extra, **head} if draw(st.booleans()) else {**head, **extra}


_RECORDS = _records()


def _generic_decoders() -> tuple[JsonDecode, JsonDecode, JsonDecode]:
    """(shaped, plain generated, the dict way) for the generic schema."""
    return (
        decoder_for(GENERIC, "generic"),
        compile_decoder(GENERIC, "generic"),
        _decoder_via_dict(GENERIC, "generic"),
    )


@settings(max_examples=250, deadline=None)
@given(records=st.lists(_RECORDS, min_size=1, max_size=6))
def test_generic_json_shaped_decoder_gives_the_same_events(records: list[dict[str, Any]]) -> None:
    shaped, plain, via_dict = _generic_decoders()
    ctx = Ctx("src", REDACTOR, None)
    line = Line("src", "/var/log/x.log", 0, 1, "{}")
    for obj in records + records:  # the second time through the shape's own decoder
        expected = plain(obj, ctx, line, "json")
        assert shaped(obj, ctx, line, "json") == expected
        assert via_dict(obj, ctx, line, "json") == expected


def test_generic_json_shaped_decoder_past_its_shape_limit() -> None:
    shaped, plain, _via_dict = _generic_decoders()
    ctx = Ctx("src", REDACTOR, None)
    line = Line("src", "/var/log/x.log", 0, 1, "{}")
    base = {"time_local": "20/Nov/2026:08:04:48 +0000", "request": "GET /a HTTP/1.1"}
    events = []
    for i in range(_MAX_SHAPES + 5):
        obj = {**base, f"extra{i}": i, "status": 200 + i % 3, "remote_addr": "192.0.2.1"}
        ev = shaped(obj, ctx, line, "json")
        assert ev is not None and ev == plain(obj, ctx, line, "json")
        events.append(ev)
    assert {e.status for e in events} == {200, 201, 202}


def test_json_parsers_use_a_decoder_per_record_shape() -> None:
    for kind, sch in SCHEMAS.items():
        assert isinstance(decoder_for(sch, kind), Shaped)


def _put(obj: dict[str, Any], lookup: str | tuple[str, ...], value: Any) -> None:
    """Set ``value`` at a flat key or a path of nested objects (made as needed)."""
    if isinstance(lookup, str):
        obj[lookup] = value
        return
    for key in lookup[:-1]:
        inner = obj.get(key)
        if not isinstance(inner, dict):
            inner = obj[key] = {}
        obj = inner
    obj[lookup[-1]] = value


_SCHEMA_TIMES = st.sampled_from(
    [
        "2026-11-20T08:04:48.5Z",
        "2026-11-20T08:04:48+02:00",
        "20/Nov/2026:08:04:48 +0000",
        1763625888,
        1763625888.25,
        1763625888123,
        1763625888123456789,
        None,
        "x",
    ]
)


@st.composite
def _schema_records(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """A record of the ``kind`` schema: some of its spellings (flat and nested) with odd
    values, a time and a request most of the time, and keys of no schema, in any order."""
    lookups = [lk for _k, lks in SCHEMAS[kind] for lk in lks]
    obj: dict[str, Any] = {}
    picked = draw(st.lists(st.sampled_from(lookups), max_size=12))
    for lookup in picked:
        _put(obj, lookup, draw(_JSON_VALUES))
    heads: list[tuple[str, st.SearchStrategy[Any]]] = [
        ("time", _SCHEMA_TIMES),
        ("target", _REQUESTS),
        ("method", _REQUESTS),
    ]
    for key, values in heads:
        spellings = dict(SCHEMAS[kind]).get(key, ())
        present: bool = draw(st.integers(0, 9)) > 0  # most records have it
        if spellings and present:
            _put(obj, draw(st.sampled_from(spellings)), draw(values))
    others = st.dictionaries(st.sampled_from(["logger", "other", "x.y"]), _JSON_VALUES, max_size=2)
    obj.update(draw(others))
    if kind == "caddy" and draw(st.booleans()):
        obj["logger"] = draw(st.sampled_from(["http.log.access.log0", "http.handlers", 5]))
        _put(
            obj,
            ("request", "tls"),
            draw(st.sampled_from([{"version": 772}, {"version": "tls1.2"}, {}, None, 3])),
        )
        _put(obj, ("request", "remote_port"), draw(st.sampled_from(["40611", 40611, None, [1]])))
    if kind == "cloudflare" and draw(st.booleans()):
        start = draw(
            st.sampled_from([1763625888, 1763625888123, 1763625888123456, 1763625888123456789])
        )
        obj["EdgeStartTimestamp"] = start
        obj["EdgeEndTimestamp"] = start + draw(st.integers(-5, 10**7))
    if kind == "traefik" and draw(st.booleans()):
        obj[draw(st.sampled_from(["DownstreamStatus", "OriginStatus", "DownstreamStatusLine"]))] = (
            draw(st.sampled_from([200, "200 OK", 404.0, "x", True, -1]))
        )
    keys = list(obj)
    order = draw(st.permutations(keys))
    return {k: obj[k] for k in order}


def _every_kind_decodes_alike(data: st.DataObject) -> None:
    for kind, sch in SCHEMAS.items():
        records = data.draw(st.lists(_schema_records(kind), min_size=1, max_size=4), label=kind)
        shaped, plain = decoder_for(sch, kind), compile_decoder(sch, kind)
        via_dict, calling = _decoder_via_dict(sch, kind), _calling_decoder(sch, kind)
        ctx = Ctx("src", REDACTOR, None)
        line = Line("src", "/var/log/x.log", 0, 1, "{}")
        for obj in records + records:  # the second time through the shape's own decoder
            expected = via_dict(obj, ctx, line, "json")
            assert plain(obj, ctx, line, "json") == expected, (kind, obj)
            assert shaped(obj, ctx, line, "json") == expected, (kind, obj)
            assert calling(obj, ctx, line, "json") == expected, (kind, obj)


def _calling_decoder(sch: Schema, kind: str) -> JsonDecode:
    """``compile_decoder`` the way it is without ``assemble``'s source: calling it."""
    jsonfmt.INLINE_ASSEMBLE = False
    try:
        return compile_decoder(sch, kind)
    finally:
        jsonfmt.INLINE_ASSEMBLE = True


def test_generated_json_decoders_write_assemble_out() -> None:
    inline = assemble_inline()
    assert inline is not None and inline[0] == tuple(RAW_KEYS)
    assert "redactor.redact_target(" in inline[1]  # the body itself
    code: list[str] = []
    real = compile

    def keep(source: str, *args: Any, **kwargs: Any) -> Any:
        code.append(source)
        return real(source, *args, **kwargs)

    jsonfmt.compile = keep  # type: ignore[attr-defined]
    try:
        compile_decoder(SCHEMAS["envoy"], "envoy", ("start_time", "method", "path"))
        _calling_decoder(SCHEMAS["envoy"], "envoy")
    finally:
        del jsonfmt.compile  # type: ignore[attr-defined]
    assert "assemble(" not in code[0] and "redact_target(" in code[0]
    assert "return assemble(ctx, line, name, " in code[1]


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_every_json_schema_decodes_alike_shaped_plain_and_via_dict(data: st.DataObject) -> None:
    _every_kind_decodes_alike(data)


def test_user_fields_with_the_generic_schema_decode_alike() -> None:
    """A user's ``fields`` come before the defaults (dotted keys too), shaped or not."""
    user = user_schema({"client_ip": "src.addr", "status": "resp.code"}, "test")
    merged = _merge(user, GENERIC)
    shaped, plain = decoder_for(merged, "generic"), compile_decoder(merged, "generic")
    ctx = Ctx("src", REDACTOR, None)
    line = Line("src", "/var/log/x.log", 0, 1, "{}")
    records: list[dict[str, Any]] = [
        {"time": "2026-11-20T08:04:48Z", "uri": "/x", "src.addr": "192.0.2.9", "status": 201},
        {"time": "2026-11-20T08:04:48Z", "uri": "/x", "src": {"addr": "192.0.2.8"}},
        {"time": "2026-11-20T08:04:48Z", "uri": "/x", "resp": {"code": 404}, "resp.code": "x"},
    ]
    for obj in records:
        ev = shaped(obj, ctx, line, "json")
        assert ev is not None and ev == plain(obj, ctx, line, "json")


def test_json_fixups_give_text_fields() -> None:
    """A fix may hand the decoder a number (Cloudflare's duration from its edge times);
    ``fields`` (``explain``) still shows every raw field as text."""
    parser = JsonParser("cloudflare", kinds=("cloudflare",))
    text = (
        '{"ClientIP":"192.0.2.1","ClientRequestMethod":"GET","ClientRequestURI":"/a",'
        '"EdgeResponseStatus":200,"EdgeStartTimestamp":1795161600007000000,'
        '"EdgeEndTimestamp":1795161600019000000}'
    )
    fields = parser.fields(text)
    assert fields is not None
    assert fields["duration_ms"] == repr(12.0) and fields["status"] == "200"
    event = parser.bind(Ctx("src", REDACTOR, None))(text, Line("src", "/x", 0, 1, text))
    assert event is not None and event.duration_ms == 12.0 and event.status == 200


def test_assemble_is_written_out_only_from_the_source_that_runs() -> None:
    """A source file changed after the import (an upgrade under a running daemon) is not
    written into new decoders: they call ``assemble`` instead."""
    code = event_module.assemble.__code__
    same = ast.parse(textwrap.dedent(inspect.getsource(event_module.assemble))).body[0]
    other = ast.parse("def assemble(ctx, line, name, time):\n    return None\n").body[0]
    assert isinstance(same, ast.FunctionDef) and isinstance(other, ast.FunctionDef)
    assert event_module._same_code(same, code)
    assert not event_module._same_code(other, code)
