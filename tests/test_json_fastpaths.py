"""The inline fast paths of the JSON decoders (ports as text, durations in ns, ISO 8601
times with a fraction, epoch times as JSON numbers, a fixup's reads of the record) give
what the general helpers give, for usual and odd values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.formats import FormatSpec, build_decoder, jsonfmt
from auditor.formats.event import _duration
from auditor.formats.spec import Ctx
from auditor.formats.times import _parse_uncached, epoch_time, parse_new_time
from auditor.model import Event, Line
from auditor.normalize import to_int
from auditor.redact import Redactor

_TRAEFIK = {
    "ClientHost": "203.0.113.1",
    "ClientPort": "40611",
    "DownstreamContentSize": 3164,
    "DownstreamStatus": 404,
    "Duration": 12000000,
    "RequestHost": "www.example.com",
    "RequestMethod": "GET",
    "RequestPath": "/a?b=1",
    "RequestPort": "443",
    "RequestProtocol": "HTTP/2.0",
    "StartUTC": "2026-11-20T08:00:00.007Z",
}
_DECODE = build_decoder(FormatSpec("traefik-json"), Redactor(b"k" * 32), "t")


def _decode(**changes: Any) -> Event:
    record = {**_TRAEFIK, **changes}
    text = orjson.dumps({k: v for k, v in record.items() if v is not None}).decode()
    ev = _DECODE(Line("t", "/t.log", 0, len(text), text))
    assert ev is not None
    return ev


PORTS = ["40611", "0443", "", "-", " 80", "+80", "8_0", "٣", "80x", "99999999999999999999"]


@pytest.mark.parametrize("port", PORTS)
def test_a_port_as_text_reads_as_to_int_reads_it(port: str) -> None:
    assert _decode(ClientPort=port).client_port == to_int(port)
    want = to_int(port)
    assert _decode(RequestPort=port).server_port == (want if want is not None else None)


@pytest.mark.parametrize("ns", [12000000, 0, -5, 1, 2**63 - 1, -(2**63), "12000000", 1.5e6, None])
def test_a_duration_in_ns_reads_as_duration_reads_it(ns: Any) -> None:
    assert _decode(Duration=ns).duration_ms == _duration(None, None, None, ns)


TIMES = [
    "2026-11-20T08:00:00.007Z",
    "2026-11-20T08:00:00.123456Z",
    "2026-11-20T08:00:00.1Z",
    "2026-11-20 08:00:00.250Z",
    "2026-11-20T08:00:60.000Z",
    "2026-02-30T08:00:00.000Z",
    "2026-11-20T08:00:00.000+00:00Z",
    "20261120T080000.000Z",
    "2026-11-20T08:00:00.Z",
    "2026-11-20T08:00:00,5Z",
    "\uff12\uff10\uff12\uff16-11-20T08:00:00.000Z",  # fullwidth digits
    "+026-11-20T08:00:00.000Z",
    " 026-11-20T08:00:00.000Z",
    "0000-11-20T08:00:00.000Z",
    "9999-12-31T23:59:59.999999Z",
    "2026-11-20T08:00:00.0000001Z",
]


@pytest.mark.parametrize("text", TIMES)
def test_an_iso_time_with_a_fraction_reads_as_the_general_way_reads_it(text: str) -> None:
    try:
        want = _parse_uncached(text)
    except (ValueError, OverflowError, OSError):
        want = None
    assert parse_new_time(text) == want


EPOCHS: list[Any] = [
    1795161600.007,  # Caddy: seconds as a float
    1795161600,
    1795161600007,  # Kong: ms
    1795161600007000,
    1795161600007000000,  # Cloudflare: ns
    99_999_999,
    100_000_000,
    1e8,
    1e8 - 1e-7,
    1e11,
    1e11 - 1e-5,
    10**11 - 1,
    10**11,
    10**14 - 1,
    10**14,
    10**17 - 1,  # its float is 1e17: scaled as ns, as the general way does
    10**17 - 64,
    10**17,
    10**19 - 1,
    10**19,
    2**63,
    -1795161600,
    -1.5,
    0,
    0.0,
    1e15 + 0.5,
    1e16,
    1e300,
    float("inf"),
    float("nan"),
    True,
]


def _caddy_time(ts: Any) -> Any:
    """The time of a Caddy record whose ``ts`` is this value (any Python number: the
    record as orjson would give it, and beyond its 64-bit integers)."""
    obj = {"ts": ts, "logger": "http.log.access", "request": {"method": "GET", "uri": "/"}}
    ev = _CADDY(obj, _CTX, Line("c", "/c.log", 0, 1, "{}"), "caddy")
    return None if ev is None else ev.timestamp


_CADDY = jsonfmt.decoder_for(jsonfmt.CADDY, "caddy")
_CTX = Ctx("c", Redactor(b"k" * 32), None)


@pytest.mark.parametrize("value", EPOCHS)
def test_an_epoch_time_reads_as_epoch_time_reads_it(value: Any) -> None:
    assert _caddy_time(value) == epoch_time(value)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.integers(10**7, 10**20),
        st.floats(1e7, 1e12),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
    )
)
def test_any_epoch_number_reads_as_epoch_time_reads_it(value: float) -> None:
    assert _caddy_time(value) == epoch_time(value)


_BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "out"
_ODD: dict[str, list[dict[str, Any]]] = {
    "caddy": [
        {"ts": 1795161600.5, "logger": "http.log.error", "request": {"method": "GET"}},
        {"ts": 1795161600.5, "logger": 3, "request": {"method": "GET", "uri": "/"}},
        {"ts": 1795161600.5, "request": "GET /"},
        {
            "ts": 1795161600,
            "request": {
                "method": "GET",
                "uri": "/x",
                "tls": {"version": 772},
                "remote_ip": "10.0.0.1",
                "client_ip": "10.0.0.1",
                "remote_port": 4431,
                "headers": {"User-Agent": [], "Referer": [7], "X-Request-Id": ["a", "b"]},
            },
        },
        {"ts": "x", "request": {"method": "GET", "uri": "/", "tls": None}},
        {"ts": 1e9, "request": {"method": "GET", "uri": "/", "tls": {"version": None}}},
        # the keys the fixup reads absent, null or of another type, in records of one shape
        {"ts": 1e9, "logger": None, "request": {"method": "GET", "uri": "/"}},
        {"ts": 1e9, "logger": ["http.log.access"], "request": {"method": "GET", "uri": "/"}},
        {"logger": "http.log.access.x", "ts": 1e9, "request": {"method": "GET", "uri": "/"}},
        {"ts": 1e9, "logger": "http.log.access", "request": None},
        {"ts": 1e9, "logger": "http.log.access"},
    ],
    "kong-json": [
        {"started_at": 1795161600007, "request": {"method": "GET", "uri": "/", "url": "x"}},
        {
            "started_at": 1795161600007,
            "request": {"method": "GET", "uri": "/", "url": "h://a.b/c", "tls": {}},
        },
        {"started_at": 1795161600007, "request": [1]},
        {"started_at": 1795161600007, "request": None},
        {"started_at": 1795161600007, "client_ip": "192.0.2.1"},
    ],
    "cloudflare": [
        {"EdgeStartTimestamp": 5, "EdgeEndTimestamp": 3, "ClientRequestURI": "/"},
        {"EdgeStartTimestamp": True, "EdgeEndTimestamp": 3, "ClientRequestMethod": "GET"},
        {
            "EdgeStartTimestamp": 1795161600,
            "EdgeEndTimestamp": 1795161601,
            "ClientRequestURI": "/",
            "ClientSSLProtocol": "NONE",
        },
        {"EdgeStartTimestamp": 1795161600007, "ClientRequestURI": "/", "ClientSSLProtocol": ""},
        {"EdgeStartTimestamp": 1795161600007, "ClientRequestURI": "/", "ClientSSLProtocol": None},
        {"EdgeStartTimestamp": 1795161600007, "ClientRequestURI": "/", "ClientSSLProtocol": 3},
        {"EdgeStartTimestamp": 1795161600007, "EdgeEndTimestamp": None, "ClientRequestURI": "/"},
        {"EdgeEndTimestamp": 1795161600019, "EdgeStartTimestamp": 1795161600007, "RayID": "r"},
        {
            "EdgeStartTimestamp": "2026-11-20T08:00:00Z",
            "EdgeEndTimestamp": "2026-11-20T08:00:01Z",
            "ClientRequestURI": "/",
            "ClientRequestScheme": "http",
            "ClientSSLProtocol": "TLSv1.3",
        },
    ],
    "traefik-json": [
        {"StartUTC": "2026-11-20T08:00:00Z", "RequestPath": "/", "ClientHost": "1.2.3.4, 5.6.7.8"},
        {"StartUTC": "2026-11-20T08:00:00Z", "RequestPath": "/", "DownstreamStatusLine": "200 OK"},
        {"StartUTC": "2026-11-20T08:00:00Z", "RequestPath": "/", "ClientHost": ","},
        {"RequestPath": "/", "ClientHost": "1.2.3.4"},
    ],
}


def _lines(fmt: str) -> list[str]:
    odd = [orjson.dumps(r).decode() for r in _ODD[fmt]]
    path = _BENCH / f"fmt-{fmt}-typical-20000.log"
    if not path.exists():
        return odd
    with path.open() as f:
        return [next(f).rstrip("\n") for _ in range(200)] + odd


def _all_events(fmt: str, texts: list[str]) -> list[Event | None]:
    decode = build_decoder(FormatSpec(fmt), Redactor(b"k" * 32), "s")
    return [decode(Line("s", "/s.log", i, i + 1, t)) for i, t in enumerate(texts)]


@pytest.mark.parametrize("fmt", sorted(_ODD))
def test_fixups_written_into_the_decoder_do_what_their_functions_do(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = _lines(fmt)
    inlined = _all_events(fmt, texts)
    monkeypatch.setattr(jsonfmt, "INLINE_FIX", False)
    called = _all_events(fmt, texts)
    assert inlined == called
    assert any(e is None for e in inlined) and any(e is not None for e in inlined)


def test_every_fixup_is_written_into_its_decoder() -> None:
    for kind, (fix, keys) in jsonfmt._FIX.items():
        assert jsonfmt._inline_fix(fix, keys, "", {}) is not None, kind


_KINDS = {
    "caddy": "caddy",
    "kong-json": "kong",
    "cloudflare": "cloudflare",
    "traefik-json": "traefik",
}


@pytest.mark.parametrize("fmt", sorted(_ODD))
def test_records_of_changing_shapes_decode_as_the_dict_way_decodes_them(fmt: str) -> None:
    """A source's bound decoder keeps the last record's shape and decoder: lines of one
    shape, then of others, then of the first again give what the dict way gives."""
    bench = _lines(fmt)[: -len(_ODD[fmt])]
    odd = [orjson.dumps(r).decode() for r in _ODD[fmt]]
    texts = bench[:3] + odd + bench[3:6] + odd[::-1] + odd[:1] * 3 + bench[6:9] + ["{}", "[1]"]
    kind = _KINDS[fmt]
    via_dict = jsonfmt._decoder_via_dict(jsonfmt.SCHEMAS[kind], kind)
    ctx = Ctx("s", Redactor(b"k" * 32), None)
    want = []
    for i, text in enumerate(texts):
        obj = orjson.loads(text)
        line = Line("s", "/s.log", i, i + 1, text)
        want.append(via_dict(obj, ctx, line, fmt) if isinstance(obj, dict) else None)
    assert _all_events(fmt, texts) == want
