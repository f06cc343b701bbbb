"""Properties: decoders never raise, whatever the bytes; a combined line written from an
event's fields parses back to the same fields; routes and times behave."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from ipaddress import IPv4Address, IPv6Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditor.formats import FORMAT_NAMES, FormatSpec, build_decoder, parse_fields
from auditor.formats.registry import canonical
from auditor.formats.times import parse_time
from auditor.model import Event, Line
from auditor.normalize import PassThroughRedactor, route_template

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = ["auto", *sorted({canonical(n) for n in FORMAT_NAMES})]
DECODERS = [build_decoder(FormatSpec(n), PassThroughRedactor(), "p") for n in NAMES]


def _line(text: str, file: str = "/p.log") -> Line:
    return Line("p", file, 0, len(text) + 1, text)


def _all_decoders(text: str) -> None:
    for dec in DECODERS:
        ev = dec(_line(text))
        assert ev is None or isinstance(ev, Event)


@FAST
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    _all_decoders(data.decode("utf-8", "replace"))


@FAST
@given(st.text(max_size=400))
def test_arbitrary_text_never_raises(text: str) -> None:
    _all_decoders(text)
    parse_fields(FormatSpec("auto"), text)


# Near-misses: a valid combined line with one field replaced by arbitrary text.
_TEMPLATE = [
    "192.0.2.1",
    " - ",
    "-",
    " [",
    "20/Nov/2026:08:00:01 +0000",
    '] "',
    "GET /a?b=1 HTTP/1.1",
    '" ',
    "200",
    " ",
    "512",
    ' "',
    "-",
    '" "',
    "curl/8",
    '"',
]


@FAST
@given(st.integers(0, len(_TEMPLATE) - 1), st.text(max_size=80))
def test_near_miss_lines_never_raise(index: int, junk: str) -> None:
    parts = list(_TEMPLATE)
    parts[index] = junk
    _all_decoders("".join(parts))


@FAST
@given(st.sampled_from(["", "<13>Nov 20 08:09:00 h nginx: ", "2026-11-20T08:00:00Z stdout F "]))
def test_wrapped_json_never_raises(prefix: str) -> None:
    for body in ('{"log":', '{"request":{}}', '{"ts":"nan","request":{"method":"GET"}}'):
        _all_decoders(prefix + body)


# --- round trip -----------------------------------------------------------------------------

_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"\\')
_PATH = st.text(alphabet=_SAFE.replace("?", "").replace("#", ""), max_size=40).map(
    lambda s: "/" + s
)
_QUERY = st.none() | st.text(alphabet=_SAFE, max_size=40)
_FREE = st.text(alphabet=_SAFE + " ", min_size=1, max_size=60).filter(
    lambda s: s != "-" and s.strip() == s and s.strip() != ""
)


@dataclass
class Fields:
    timestamp: datetime
    offset_minutes: int
    client_ip: str
    user_name: str | None
    method: str
    path: str
    query: str | None
    http_version: str
    status: int
    bytes_out: int | None
    referrer: str | None
    user_agent: str | None


def _ip(addr: IPv4Address | IPv6Address) -> str:
    return str(addr)


def _not_v4_mapped(addr: IPv4Address | IPv6Address) -> bool:
    return not isinstance(addr, IPv6Address) or addr.ipv4_mapped is None


_fields = st.builds(
    Fields,
    timestamp=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)
    ).map(lambda d: d.replace(microsecond=0)),
    offset_minutes=st.integers(-14 * 60, 14 * 60),
    client_ip=st.one_of(
        st.ip_addresses(v=4).map(_ip),
        st.ip_addresses(v=6).filter(_not_v4_mapped).map(_ip),
    ),
    user_name=st.none() | st.from_regex(r"[A-Za-z0-9._@]{1,16}", fullmatch=True),
    method=st.from_regex(r"[A-Z]{1,10}", fullmatch=True),
    path=_PATH,
    query=_QUERY,
    http_version=st.sampled_from(["1.0", "1.1", "2.0"]),
    status=st.integers(100, 599),
    bytes_out=st.none() | st.integers(0, 10**12),
    referrer=st.none() | _FREE,
    user_agent=st.none() | _FREE,
)


def _combined(f: Fields) -> str:
    tz = timezone(timedelta(minutes=f.offset_minutes))
    local = f.timestamp.astimezone(tz)
    target = f.path + ("?" + f.query if f.query is not None else "")
    return (
        f"{f.client_ip} - {f.user_name or '-'} [{local.strftime('%d/%b/%Y:%H:%M:%S %z')}] "
        f'"{f.method} {target} HTTP/{f.http_version}" {f.status} '
        f"{'-' if f.bytes_out is None else f.bytes_out} "
        f'"{f.referrer or "-"}" "{f.user_agent or "-"}"'
    )


@settings(max_examples=150, deadline=None)
@given(_fields, st.sampled_from(["nginx-combined", "apache-combined", "auto"]))
def test_combined_round_trip(f: Fields, fmt: str) -> None:
    text = _combined(f)
    ev = build_decoder(FormatSpec(fmt), PassThroughRedactor(), "p")(_line(text))
    assert ev is not None, text
    got = (
        ev.timestamp,
        ev.client_ip,
        ev.user_name,
        ev.method,
        ev.path,
        ev.query,
        ev.http_version,
        ev.status,
        ev.bytes_out,
        ev.referrer,
        ev.user_agent,
    )
    want = (
        f.timestamp,
        f.client_ip,
        f.user_name,
        f.method,
        f.path,
        f.query,
        f.http_version,
        f.status,
        f.bytes_out,
        f.referrer,
        f.user_agent,
    )
    assert got == want, text
    assert ev.route == route_template(f.path)
    assert ev.scheme is None and ev.host is None


# --- routes and times -------------------------------------------------------------------------


@FAST
@given(st.lists(st.one_of(st.integers(0, 10**12).map(str), st.uuids().map(str), _FREE), max_size=6))
def test_route_template_properties(segments: list[str]) -> None:
    path = "/" + "/".join(s.replace("/", "") for s in segments)
    route = route_template(path)
    assert route_template(route) == route  # idempotent
    assert route.count("/") == path.count("/")  # same shape
    for seg in route.split("/"):
        assert not (seg.isdigit() and seg.isascii())  # no bare number survives


@FAST
@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31)),
    st.integers(-14 * 60, 14 * 60),
)
def test_clf_and_iso_times_round_trip(naive: datetime, offset: int) -> None:
    tz = timezone(timedelta(minutes=offset))
    local = naive.replace(tzinfo=tz, microsecond=0)
    want = local.astimezone(UTC)
    assert parse_time(local.strftime("%d/%b/%Y:%H:%M:%S %z")) == want
    assert parse_time(local.isoformat()) == want


_CLF_PIECES = st.sampled_from(
    [" ", '"', "[", "]", "-", "GET", "/a", "?q=1", "HTTP/1.1", "HTTP/", "200", "1234", "x", "\\"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_CLF_PIECES | st.text(max_size=4), max_size=30))
def test_possessive_clf_patterns_match_like_backtracking_ones(pieces: list[str]) -> None:
    """The clean-line CLF patterns use possessive quantifiers for speed; without the ``+``
    they must give the very same match (or none) on any text, near-misses included."""
    import re

    from auditor.formats import clf

    text = "".join(pieces)
    for possessive in (clf._STRICT, clf._STRICT_VHOST):
        plain = re.compile(
            possessive.pattern.replace("}+", "}").replace("*+", "*").replace("++", "+")
        )
        a, b = possessive.match(text), plain.match(text)
        assert (a and a.groups()) == (b and b.groups())
        good = '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 200 12 "r" "u"' + text
        a, b = possessive.match(good), plain.match(good)
        assert (a and a.groups()) == (b and b.groups())
        assert a is not None or possessive is clf._STRICT_VHOST
