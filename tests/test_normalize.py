"""Normalization helpers: routes, request lines, addresses, TLS and time parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.formats.times import parse_time
from auditor.normalize import (
    ROUTE_CACHE,
    PassThroughRedactor,
    RedactorLike,
    first_ip,
    last_ip,
    norm_http_version,
    norm_ip,
    norm_scheme,
    norm_tls,
    parse_absolute,
    parse_request_line,
    route_template,
    route_templates,
    scheme_from_https,
    split_client,
    split_hostport,
    split_target,
    to_float,
    to_int,
)


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/users/42/orders/9f1c2b3a4d5e6f708192a3b4", "/users/{id}/orders/{id}"),
        ("/api/v1/users/12345", "/api/v1/users/{id}"),
        ("/api/v1/users/12345/", "/api/v1/users/{id}/"),
        ("/x/550e8400-e29b-41d4-a716-446655440000/y", "/x/{id}/y"),
        ("/x/550E8400-E29B-41D4-A716-446655440000", "/x/{id}"),
        ("/objects/5f2b6c9d8e7a6b5c4d3e2f1a", "/objects/{id}"),
        (
            "/.well-known/acme-challenge/FMuukC2JOJ5HKmLBujjE_BkDo",
            "/.well-known/acme-challenge/{id}",
        ),
        ("/customers/cus_N1a2b3c4d5e6", "/customers/{id}"),
        ("/static/app.12345.js", "/static/app.{id}.js"),
        ("/image/60844/productModel/200x200", "/image/{id}/productModel/200x200"),
        # not ids: versions, words, slugs, short hex-looking words, dates kept as numbers
        ("/api/v1/cart", "/api/v1/cart"),
        ("/api/1.0/users", "/api/1.0/users"),
        ("/my-long-product-name-2024", "/my-long-product-name-2024"),
        ("/deadbeef", "/deadbeef"),
        ("/index.php/nous-contacter/", "/index.php/nous-contacter/"),
        ("/", "/"),
        ("", ""),
        ("*", "*"),
        ("\\x16\\x03\\x01", "{other}"),
        ("123.123.123.123", "{other}"),
        ("/a//b/7", "/a//b/{id}"),
        ("/٣", "/٣"),  # a non-ASCII digit is not an id
    ],
)
def test_route_template(path: str, route: str) -> None:
    assert route_template(path) == route


_ROUTE_CASES = [
    "/users/42/orders/9f1c2b3a4d5e6f708192a3b4",
    "/api/v1/users/12345",
    "/api/v1/users/12345678901234/orders",  # a digit segment too long for the short way
    "/api/v1/users/12345/",
    "/x/550e8400-e29b-41d4-a716-446655440000/y",
    "/x/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee/7",  # an id with no digit, beside one
    "/x/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",  # no digit at all: kept as it is
    "/static/app.12345.js",
    "/api/v1/cart",
    "/a//b/7",
    "/7",
    "/",
    "",
    "*",
    "123.123.123.123",
    "12/34",
    "/٣/4",
    "/a/1\n/b/2",  # a newline in a path (escaped in logs, but not in every one)
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(_ROUTE_CASES),
            st.text(alphabet="/ab1_~-.9Z\n%", max_size=30),
            st.lists(
                st.sampled_from(
                    ["a", "v1", "42", "", "7" * 12, "x" * 11, "0123456789abcdef01", "a.b"]
                )
            ).map(lambda segs: "/" + "/".join(segs)),
        ),
        max_size=40,
    )
)
def test_route_templates_of_a_chunk_are_each_paths_route_template(paths: list[str]) -> None:
    """The new paths of a chunk templated together (``auditor.rowchunk``) get the routes
    ``route_template`` gives each, one object per route, and go into its memo."""
    ROUTE_CACHE.clear()
    want = [route_template(p) for p in paths]
    ROUTE_CACHE.clear()  # every path new again (the routes made stay: one object each)
    got = route_templates(paths)
    assert got == want
    assert all(a is b for a, b in zip(got, want, strict=True))
    assert all(ROUTE_CACHE[p] is r for p, r in zip(paths, got, strict=True))


def test_route_template_is_cached() -> None:
    ROUTE_CACHE.clear()
    assert route_template("/a/1") == "/a/{id}"
    assert ROUTE_CACHE["/a/1"] == "/a/{id}"
    for i in range(20_000):  # bounded
        route_template(f"/b/x{i}")
    assert len(ROUTE_CACHE) <= 16384


@pytest.mark.parametrize(
    ("request_line", "expected"),
    [
        ("GET /a?b=1 HTTP/1.1", ("GET", "/a?b=1", "1.1")),
        ("get /a HTTP/1.0", ("get", "/a", "1.0")),
        ("M-SEARCH * HTTP/1.1", ("M-SEARCH", "*", "1.1")),
        ("CONNECT 123.123.123.123 HTTP/1.1", ("CONNECT", "123.123.123.123", "1.1")),
        ("GET http://h:80/p HTTP/1.1", ("GET", "http://h:80/p", "1.1")),
        ("GET /", ("GET", "/", None)),
        ("GET /a b HTTP/1.1", ("GET", "/a b", "1.1")),
        ("-", (None, "", None)),
        ("", (None, "", None)),
        ("HELP", (None, "HELP", None)),
        ("batman", (None, "batman", None)),
        ("\\x16\\x03\\x01\\x00", (None, "\\x16\\x03\\x01\\x00", None)),
        ("POST https://example.com/", ("POST", "https://example.com/", None)),
    ],
)
def test_parse_request_line(
    request_line: str, expected: tuple[str | None, str, str | None]
) -> None:
    assert parse_request_line(request_line) == expected


def test_split_target_and_absolute() -> None:
    assert split_target("/a?b=1&c") == ("/a", "b=1&c")
    assert split_target("/a?") == ("/a", "")
    assert split_target("/a") == ("/a", None)
    assert parse_absolute("http://h:8080/p?q") == ("http", "h", 8080, "/p?q")
    assert parse_absolute("HTTPS://user:pw@h/") == ("https", "h", None, "/")
    assert parse_absolute("https://h") == ("https", "h", None, "/")
    assert parse_absolute("https://[::1]:8443/x") == ("https", "::1", 8443, "/x")
    assert parse_absolute("/p") is None


def test_addresses() -> None:
    assert split_hostport("h:80") == ("h", 80)
    assert split_hostport("h") == ("h", None)
    assert split_hostport("[::1]:443") == ("::1", 443)
    assert split_hostport("fd00::1") == ("fd00::1", None)
    assert split_hostport("-") == (None, None)
    assert split_hostport("h:x") == ("h", None)
    assert split_client("10.0.0.12:59292") == ("10.0.0.12", 59292)
    assert split_client("[fd00:1234:5678::5a24]:43000") == ("fd00:1234:5678::5a24", 43000)
    assert split_client("fd00:1234:5678::5a24") == ("fd00:1234:5678::5a24", None)
    assert split_client("2001:db8::1234:58430", has_port=True) == ("2001:db8::1234", 58430)
    assert split_client("::ffff:192.168.33.1:58430", has_port=True) == ("192.168.33.1", 58430)
    assert norm_ip("[::1]") == "::1"
    assert norm_ip("::FFFF:10.0.0.1") == "10.0.0.1"
    assert norm_ip("-") is None
    assert first_ip("192.168.1.100, 10.42.0.1") == "192.168.1.100"
    assert first_ip("fd00::5a24, [fd00::1]:54321") == "fd00::5a24"
    assert last_ip("192.168.1.100,10.0.0.50") == "10.0.0.50"
    assert first_ip("-") is None and last_ip("") is None


@pytest.mark.parametrize(
    ("value", "version"),
    [
        ("TLSv1.2", "1.2"),
        ("TLSv1.3", "1.3"),
        ("TLSv1", "1.0"),
        ("TLSv1.1", "1.1"),
        ("tls1_3", "1.3"),
        ("SSLv3", "SSLv3"),
        ("771", "1.2"),
        ("772", "1.3"),
        ("769", "1.0"),
        ("768", "SSLv3"),
        ("1.3", "1.3"),
        ("-", None),
        ("none", None),
        ("", None),
        (None, None),
        ("QUIC", None),
    ],
)
def test_norm_tls(value: str | None, version: str | None) -> None:
    assert norm_tls(value) == version


def test_scalars_and_schemes() -> None:
    assert to_int("12") == 12 and to_int("-") is None and to_int("x") is None
    assert to_float("0.5") == 0.5 and to_float("nan") is None and to_float("inf") is None
    assert norm_http_version("HTTP/1.1") == "1.1" and norm_http_version("HTTP/2") == "2"
    assert norm_http_version("-") is None
    assert norm_scheme("HTTPS") == "https" and norm_scheme("h2") == "https"
    assert norm_scheme("ws") == "http" and norm_scheme("wss") == "https"
    assert norm_scheme("https, http") == "https" and norm_scheme("ftp") is None
    assert scheme_from_https("on") == "https" and scheme_from_https("") == "http"
    assert scheme_from_https("-") == "http" and scheme_from_https(None) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10/Oct/2000:13:55:36 -0700", datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC)),
        ("22/Jan/2019:03:56:14 +0330", datetime(2019, 1, 22, 0, 26, 14, tzinfo=UTC)),
        ("04/Jan/2020:07:25:02 +0000", datetime(2020, 1, 4, 7, 25, 2, tzinfo=UTC)),
        ("14/Jan/2015:12:48:57.127", datetime(2015, 1, 14, 12, 48, 57, 127000, tzinfo=UTC)),
        ("2023-04-26T12:22:55.463821Z", datetime(2023, 4, 26, 12, 22, 55, 463821, tzinfo=UTC)),
        ("2021-12-08T14:02:43.587782192Z", datetime(2021, 12, 8, 14, 2, 43, 587782, tzinfo=UTC)),
        ("2026-01-14T10:45:33+01:00", datetime(2026, 1, 14, 9, 45, 33, tzinfo=UTC)),
        ("2019-01-01 12:00:00", datetime(2019, 1, 1, 12, 0, 0, tzinfo=UTC)),
        ("2021/12/01 13:53:33", datetime(2021, 12, 1, 13, 53, 33, tzinfo=UTC)),
        ("1693840791.5", datetime(2023, 9, 4, 15, 19, 51, 500000, tzinfo=UTC)),
        ("1693840791500", datetime(2023, 9, 4, 15, 19, 51, 500000, tzinfo=UTC)),
        ("1693840791500000", datetime(2023, 9, 4, 15, 19, 51, 500000, tzinfo=UTC)),
        ("1693840791500000000", datetime(2023, 9, 4, 15, 19, 51, 500000, tzinfo=UTC)),
        ("[10/Oct/2000:13:55:36 +0000]", datetime(2000, 10, 10, 13, 55, 36, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    got = parse_time(text)
    assert got == expected
    assert got is not None and got.tzinfo is UTC
    assert parse_time(text) is got  # memoized


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-",
        "yesterday",
        "32/Oct/2000:13:55:36 +0000",
        "10/Foo/2000:13:55:36 +0000",
        "10/Oct/2000:13:55:61 +0000",
        "10/Oct/2000:25:55:36 +0000",
        "2023-13-01T00:00:00Z",
        "99999999999999999999",
        "2021/12/41 13:53:33",
    ],
)
def test_parse_time_rejects(text: str) -> None:
    assert parse_time(text) is None


def test_pass_through_redactor_satisfies_protocol() -> None:
    r: RedactorLike = PassThroughRedactor()
    assert r.redact_target("/a", "b=1") == ("/a", "b=1", ())
    assert r.redact_url("http://x/", "referer") == ("http://x/", ())
    assert r.redact_text("ua") == "ua" and r.redact_user("bob") == "bob"


def test_paths_of_one_route_share_its_text() -> None:
    """A decode worker sends every event's route: one object per route is pickled once."""
    a = route_template("/api/v1/users/81234/orders")
    b = route_template("/api/v1/users/99120/orders")
    assert a == "/api/v1/users/{id}/orders"
    assert a is b
