"""``Pipeline.decode_whole_lines`` (a decode worker's chunks of JSON lines read straight
from the bytes) gives the batch that cutting the chunk into ``Line``s and ``decode`` give:
the same events, counters and aggregates, for good lines and every kind of bad one."""

from __future__ import annotations

from dataclasses import fields

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.decodeworker import END_PLAIN, MORE, decode_chunk
from auditor.formats import FormatSpec, build_decoder
from auditor.lines import LineSplitter
from auditor.model import Event, Line
from auditor.pipeline import Batch, Pipeline
from auditor.redact import Redactor
from auditor.store.eventblocks import serialize_events

FILE = "/var/log/traefik/access.log"
MAX = 4096


def _record(n: int, **changes: object) -> bytes:
    rec = {
        "ClientHost": f"198.51.100.{n % 250 + 1}",
        "ClientPort": str(40000 + n),
        "DownstreamContentSize": 100 + n,
        "DownstreamStatus": (200, 401, 404, 503)[n % 4],
        "Duration": 12000000,
        "RequestHost": "api.example.com",
        "RequestMethod": "GET",
        "RequestPath": f"/users/{n}?email=jo{n}@example.com" if n % 5 == 0 else f"/items/{n}",
        "RequestPort": "443",
        "RequestProtocol": "HTTP/1.1",
        "RequestScheme": "https" if n % 3 else "http",
        "StartUTC": f"2026-11-20T08:{n % 60:02d}:{n % 59:02d}.{n % 1000:03d}Z",
        "request_User-Agent": "curl/8.4.0",
    }
    rec.update(changes)
    return orjson.dumps(rec)


# Lines the bytes form must leave to the usual way, or agree with it on.
ODD = [
    b"",  # empty
    b"   ",  # blank
    b"not json at all",
    b"[1, 2, 3]",  # JSON, not an object
    b'{"truncated": ',
    b" " + _record(7),  # leading space: the usual way does not take it as JSON
    _record(8) + b"\r",  # CRLF
    _record(9)[:-1] + b',"x":"caf\xc3\xa9"}',  # UTF-8 beyond ASCII
    _record(10)[:-1] + b',"x":"\xff\xfe"}',  # not UTF-8: decoded with replacement
    b'{"StartUTC": "2026-11-20T08:00:00Z"}',  # JSON, but no request in it
    b"#Fields: date time",  # a directive is not counted as unparsed
    b"\x00\x01\x02 binary",
    _record(11, DownstreamStatus="200 OK"),
    _record(12, RequestPath=12),
    b'{"log":"{\\"a\\":1}\\n","stream":"stdout","time":"2026-11-20T08:00:00Z"}',  # docker
]


# Records whose target (or referrer) holds something to redact, or looks as if it might:
# the bytes way redacts a chunk's targets together (``Redactor.dirty_targets``).
PII = [
    _record(13, RequestPath="/reset/jo@example.com?token=abc123"),
    _record(
        14,
        RequestPath="/pay?card=4111111111111111",
        request_Referer="https://x.example/?email=a@b.co",
    ),
    _record(15, RequestPath="/keys/AKIAIOSFODNN7EXAMPLE/x"),
    _record(16, RequestPath="/u/1234567/x"),
    _record(17, RequestPath="/A/B?Q=1"),
    _record(18, RequestPath="/a;jsessionid=1234"),
    _record(19, RequestPath="/a%40b.example/c"),
    _record(20, RequestPath="/u/4111-1111-1111-1111"),
    _record(21, request_Referer="https://x.example/u/jo@example.com"),
    _record(22, RequestPath="/caf\u00e9/1234567?x=\u00e9"),
    _record(23, RequestPath="/iban/DE89370400440532013000"),
]


def _pipeline(fmt: str = "traefik-json") -> Pipeline:
    return Pipeline({"t": build_decoder(FormatSpec(fmt), Redactor(b"k" * 32), "t")}, None)


def _settled(fmt: str = "traefik-json") -> Pipeline:
    """A pipeline whose decoder has read the file's first line (the format is settled)."""
    p = _pipeline(fmt)
    first = _record(0).decode()
    p.decode([Line("t", FILE, 0, len(first) + 1, first)])
    return p


def _usual(p: Pipeline, offset: int, data: bytes) -> Batch:
    lines = LineSplitter("t", FILE, offset, MAX).feed(data)
    return p.decode(lines)


def _same(a: Batch, b: Batch) -> None:
    """``a`` (the bytes way) is ``b`` (the usual way): events, aggregates, and the events
    decoded into their rows (see ``auditor.rowchunk``) are the rows ``b`` stores, and
    their columns ``b``'s events' fields."""
    assert list(a.events) == b.events
    if a.table is not None:
        assert a.packed == a.table.blocks == serialize_events(b.events, b.event_ms, [])
        columns = a.table.columns or {}
        assert set(columns) == {f.name for f in fields(Event)} - {"timestamp"}
        for name, values in columns.items():
            assert values == [getattr(e, name) for e in b.events], name
    assert a.counters == b.counters
    assert a.minutes == b.minutes
    assert a.client_hours == b.client_hours
    assert a.exposures == b.exposures
    assert a.event_ms == b.event_ms


@pytest.mark.parametrize("odd", ODD, ids=range(len(ODD)))
def test_each_odd_line_comes_out_as_the_usual_way_makes_it(odd: bytes) -> None:
    data = b"\n".join([_record(1), odd, _record(2)]) + b"\n"
    whole = _settled().decode_whole_lines("t", FILE, 1000, data, MAX)
    assert whole is not None and whole.table is not None  # decoded into its rows
    _same(whole, _usual(_settled(), 1000, data))


@pytest.mark.parametrize("pii", PII, ids=range(len(PII)))
def test_a_target_to_redact_comes_out_as_the_usual_way_makes_it(pii: bytes) -> None:
    data = b"\n".join([_record(1), pii, _record(5), pii, _record(2)]) + b"\n"
    whole = _settled().decode_whole_lines("t", FILE, 1000, data, MAX)
    assert whole is not None and whole.table is not None
    _same(whole, _usual(_settled(), 1000, data))


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.one_of(st.integers(0, 500).map(_record), st.sampled_from(ODD), st.sampled_from(PII)),
        max_size=40,
    )
)
def test_any_mix_of_lines_comes_out_as_the_usual_way_makes_it(lines: list[bytes]) -> None:
    data = b"".join(line + b"\n" for line in lines)
    whole = _settled().decode_whole_lines("t", FILE, 77, data, MAX)
    if not lines:
        assert whole is None
        return
    assert whole is not None
    _same(whole, _usual(_settled(), 77, data))
    assert whole.counters["t"].lines_read == len(lines)
    assert whole.counters["t"].bytes_read == len(data)


def test_it_waits_for_the_files_first_line_to_settle_the_format() -> None:
    data = _record(1) + b"\n"
    assert _pipeline().decode_whole_lines("t", FILE, 0, data, MAX) is None
    p = _settled()
    assert p.decode_whole_lines("t", "/another/file.log", 0, data, MAX) is None
    assert p.decode_whole_lines("t", FILE, 0, data, MAX) is not None


def test_an_over_long_line_leaves_the_chunk_to_the_splitter() -> None:
    data = _record(1) + b"\n" + _record(2, RequestPath="/" + "a" * MAX) + b"\n"
    assert _settled().decode_whole_lines("t", FILE, 0, data, MAX) is None


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_a_line_of_the_longest_length_is_decoded_one_longer_is_not(newline: bytes) -> None:
    record = _record(2)
    longest = record[:-1] + b" " * (MAX - len(record) - len(newline) + 1) + b"}"
    data = _record(1) + b"\n" + longest + newline
    assert len(longest + newline) - 1 == MAX  # the splitter's limit, its newline not counted
    whole = _settled().decode_whole_lines("t", FILE, 0, data, MAX)
    assert whole is not None
    _same(whole, _usual(_settled(), 0, data))
    longer = data[:-1] + b" " + newline[-1:]
    assert _settled().decode_whole_lines("t", FILE, 0, longer, MAX) is None


@pytest.mark.parametrize("fmt", ["combined", "auto"])
def test_formats_without_a_bytes_form_go_the_usual_way(fmt: str) -> None:
    p = _pipeline(fmt)
    text = '203.0.113.9 - - [20/Nov/2026:08:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "x"'
    p.decode([Line("t", FILE, 0, len(text) + 1, text)])
    assert p.decode_whole_lines("t", FILE, 0, (text + "\n").encode(), MAX) is None


def test_a_prefixed_file_goes_the_usual_way() -> None:
    """A CRI prefix before each record: the decoder strips it, the bytes form does not."""
    p = _pipeline()
    text = "2026-11-20T08:00:00.000000000Z stdout F " + _record(0).decode()
    assert p.decode([Line("t", FILE, 0, len(text) + 1, text)]).events
    assert p.decode_whole_lines("t", FILE, 0, (text + "\n").encode(), MAX) is None


def test_a_worker_chunk_gives_the_splitters_batch_and_offsets() -> None:
    """``decode_chunk`` takes the bytes way for whole lines of a settled file; the chunk
    ends where the splitter's would, with nothing pending."""
    data = b"".join(_record(n) + b"\n" for n in range(1, 50))
    fast, slow = _settled(), _settled()
    got = decode_chunk(fast, {}, MAX, "id", "t", FILE, 500, data, MORE)
    splitters: dict[str, LineSplitter] = {}
    want = decode_chunk(slow, splitters, MAX, "id", "t", FILE, 500, data[:-1], MORE)
    rest = decode_chunk(slow, splitters, MAX, "id", "t", FILE, 500, b"\n", END_PLAIN)
    assert (got.offset, got.pending) == (rest.offset, rest.pending) == (500 + len(data), False)
    assert list(got.batch.events) == want.batch.events + rest.batch.events
