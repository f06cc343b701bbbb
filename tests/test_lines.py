from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.lines import LineSplitter
from auditor.model import Line


def test_only_complete_lines_and_offsets() -> None:
    s = LineSplitter("src", "f.log", 100)
    out = s.feed(b"one\ntw")
    assert [(x.text, x.offset, x.end) for x in out] == [("one", 100, 104)]
    assert s.resume_offset == 104
    out = s.feed(b"o\r\nthree\n")
    assert [(x.text, x.offset, x.end) for x in out] == [("two", 104, 109), ("three", 109, 115)]
    assert s.pending == 0


def test_long_line_is_truncated_and_counted_memory_bounded() -> None:
    s = LineSplitter("src", "f.log", 0, max_len=10)
    out = s.feed(b"x" * 25)  # no newline yet: head emitted, rest skipped
    assert len(out) == 1 and out[0].truncated and out[0].text == "x" * 10
    assert s.pending == 0
    out = s.feed(b"yyyy\nok\n")
    assert [x.text for x in out] == ["ok"]
    out = s.feed(b"z" * 15 + b"\n")
    assert out[0].truncated and out[0].text == "z" * 10


def test_invalid_utf8_and_nul_never_raise() -> None:
    s = LineSplitter("src", "f.log", 0)
    out = s.feed(b"\xff\xfe\x00bad\n")
    assert out[0].text.endswith("bad")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["GET /a", "x" * 40, "é", "\r", "\n", "\r\n", "", "z" * 7]), max_size=40
    ),
    st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_the_ascii_fast_path_cuts_like_the_byte_path(pieces: list[str], cuts: list[int]) -> None:
    data = "".join(pieces).encode()
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    fast = LineSplitter("s", "f", 0, max_len=16)
    slow = LineSplitter("s", "f", 0, max_len=16)
    got: list[Line] = []
    want: list[Line] = []
    for c in chunks:
        got.extend(fast.feed(c))
        want.extend(slow._feed_bytes(slow._buf + c if slow._buf else c))
    assert got == want
    assert fast.offset == slow.offset and fast.pending == slow.pending
