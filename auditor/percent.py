"""Percent-decoding that remembers where each decoded character came from.

Detection runs on decoded text (``%40`` is an ``@``), but the mask must be written over
the *logged* text so that everything around it keeps its encoding. ``decode`` gives the
text; ``decode_offsets`` gives the same text plus, for each decoded character, its start
in the logged string. Both share one implementation so their output never differs.
Invalid UTF-8 becomes U+FFFD, one per bad byte.
"""

from __future__ import annotations

import re
from itertools import accumulate

_PCT_ONE = re.compile(r"%[0-9A-Fa-f]{2}")


def _utf8_len(c: str) -> int:
    return 1 if c < "\x80" else 2 if c < "\u0800" else 3 if c < "\U00010000" else 4


def _run(data: bytes, base: int, out: list[str], offs: list[int] | None) -> None:
    """Decode one run of escapes (``data``) that starts at raw index ``base``."""
    if data.isascii():
        out.append(data.decode("ascii"))
        if offs is not None:
            offs.extend(range(base, base + 3 * len(data), 3))
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        out.append(text)
        if offs is not None:
            starts = accumulate((_utf8_len(c) for c in text[:-1]), initial=0)
            offs.extend(base + 3 * b for b in starts)
        return
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        size = 1 if b < 0x80 else 2 if b < 0xE0 else 3 if b < 0xF0 else 4
        try:
            ch = data[i : i + size].decode("utf-8")
        except UnicodeDecodeError:
            ch = ""
        if len(ch) != 1:
            ch, size = "\ufffd", 1
        out.append(ch)
        if offs is not None:
            offs.append(base + 3 * i)
        i += size


_HEX: dict[str, int] = {
    f"{a}{b}": int(f"{a}{b}", 16)
    for a in "0123456789abcdefABCDEF"
    for b in "0123456789abcdefABCDEF"
}


def _decode(raw: str, offs: list[int] | None) -> str:
    """One round of percent-decoding; one pass over ``raw.split("%")``."""
    parts = raw.split("%")
    out = [parts[0]]
    if offs is not None:
        offs.extend(range(len(parts[0])))
    pos = len(parts[0])  # where the '%' before the current part sits in raw
    pend = bytearray()  # consecutive escaped bytes not yet decoded
    pend_at = 0
    for part in parts[1:]:
        v = _HEX.get(part[:2])
        if v is None:
            if pend:
                _run(bytes(pend), pend_at, out, offs)
                pend.clear()
            out.append("%" + part)
            if offs is not None:
                offs.extend(range(pos, pos + 1 + len(part)))
        else:
            if not pend:
                pend_at = pos
            pend.append(v)
            if len(part) > 2:
                if len(pend) == 1 and v < 0x80:  # one ASCII escape: the common case
                    out.append(chr(v))
                    if offs is not None:
                        offs.append(pos)
                else:
                    _run(bytes(pend), pend_at, out, offs)
                pend.clear()
                out.append(part[2:])
                if offs is not None:
                    offs.extend(range(pos + 3, pos + 1 + len(part)))
        pos += len(part) + 1
    if pend:
        _run(bytes(pend), pend_at, out, offs)
    return "".join(out)


# Long ASCII text whose every '%' starts an escape decodes in C: ``%XX`` -> ``\\xXX`` under
# ``unicode_escape`` gives the bytes, and when they are valid UTF-8 as a whole, every run
# of escapes holds whole characters, so the text is exactly what ``_decode`` gives, without
# a Python step per escape (a 1 MB hostile URL of ``%2540`` has 200,000 of them).
_FAST_FROM = 256
_NOT_SIMPLE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def decode_simple(raw: str) -> str | None:
    """One round of decoding for ASCII text with only valid escapes of valid UTF-8, else None."""
    if not raw.isascii() or _NOT_SIMPLE.search(raw) is not None:
        return None
    escaped = raw.replace("\\", "\\\\").replace("%", "\\x")
    data = escaped.encode("ascii").decode("unicode_escape").encode("latin-1")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def decode_once(raw: str) -> str:
    if "%" not in raw:
        return raw
    if len(raw) >= _FAST_FROM:
        fast = decode_simple(raw)
        if fast is not None:
            return fast
    return _decode(raw, None)


def decode_once_offsets(raw: str) -> tuple[str, list[int]]:
    """Decoded text and ``offsets`` (``offsets[i]`` = raw start of char ``i``; last = len)."""
    offs: list[int] = []
    text = _decode(raw, offs)
    offs.append(len(raw))
    return text, offs


def _again(text: str) -> bool:
    return "%" in text and _PCT_ONE.search(text) is not None


def decode(raw: str, form: bool) -> tuple[str, str]:
    """Decode up to twice (``%2540`` -> ``%40`` -> ``@``).

    Returns the text with ``+`` kept and the form-decoded text (``+`` = space, when
    ``form``); both have the same length and the same positions.
    """
    form = form and "+" in raw
    if "%" not in raw:
        return raw, (raw.replace("+", " ") if form else raw)
    plus = decode_once(raw)
    formed = decode_once(raw.replace("+", " ")) if form else plus
    if _again(plus):
        plus = decode_once(plus)
        formed = decode_once(formed) if form else plus
    return plus, formed


def decode_offsets(raw: str) -> list[int] | None:
    """The offsets map for ``decode(raw, ...)``'s texts; None when it is the identity."""
    if "%" not in raw:
        return None
    plus, m1 = decode_once_offsets(raw)
    if not _again(plus):
        return m1
    _, m2 = decode_once_offsets(plus)
    return [m1[i] for i in m2]
