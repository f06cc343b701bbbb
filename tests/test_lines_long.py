"""``LineSplitter`` cuts chunks of long lines with ``find`` and others with ``split``
(``lines.LONG_LINE``, judged by a chunk's first line): both ways give the same lines,
offsets, ends and flags, whatever the mix of lengths, CRLF, over-long lines and chunk
boundaries."""

from __future__ import annotations

import random

import pytest

import auditor.lines
from auditor.lines import LineSplitter
from auditor.model import Line


def _stream(seed: int) -> bytes:
    rng = random.Random(seed)
    out = []
    for _ in range(400):
        n = rng.choice([0, 1, 5, 80, 300, 599, 600, 601, 870, 2000, 5000])
        line = bytes(rng.choice(b'abcdefghij {}:,"0123456789') for _ in range(n))
        if rng.random() < 0.1:
            line += b"\r"
        out.append(line)
    return b"\n".join(out) + b"\n" + b"partial"


def _split(data: bytes, cuts: list[int], max_len: int) -> tuple[list[Line], int, bool]:
    sp = LineSplitter("s", "/f.log", 7, max_len)
    lines: list[Line] = []
    prev = 0
    for c in [*cuts, len(data)]:
        lines.extend(sp.feed(data[prev:c]))
        prev = c
    return lines, sp.offset, sp.idle


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_len", [65536, 1000])
def test_find_and_split_cut_alike(seed: int, max_len: int, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _stream(seed)
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), 40))
    got = []
    for long_line in (0, 1 << 30, 600):  # always find, always split, as shipped
        monkeypatch.setattr(auditor.lines, "LONG_LINE", long_line)
        got.append(_split(data, cuts, max_len))
    assert got[0] == got[1] == got[2]
    lines = got[0][0]
    assert any(len(ln.text) >= 600 for ln in lines) and any(ln.truncated for ln in lines) == (
        max_len < 5000
    )
    # every line's text is what the file holds between its offset and its end
    for ln in lines:
        raw = data[ln.offset - 7 : ln.end - 7].rstrip(b"\n")
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        assert ln.text == raw[:max_len].decode()
