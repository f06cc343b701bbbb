"""Hostile text: every string a log line controls, made safe for a paragraph in a PDF.

Three steps, in order: ``scrub`` masks anything that still looks like a secret (a second
line of defence; values are redacted at ingest), ``clean`` drops control characters and
bounds the length, ``markup`` escapes reportlab's paragraph mark-up and replaces characters
the font cannot draw. A URL holding ``<img src="/etc/passwd"/>`` prints as those characters
and loads nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from xml.sax.saxutils import escape

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufeff\ufff9-\ufffb]")
_WS = re.compile(r"[\t\n\r\x0b\x0c\u2028\u2029]")

_PAN = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
# Bounded repetitions and boundaries keep every pattern linear on a 100 kB run of letters.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{0,63}"
    r"@([A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8})"
)
_JWT = re.compile(
    r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,4000}\.[A-Za-z0-9_-]{5,8000}\.[A-Za-z0-9_-]{0,4000}"
)
_AWS = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
_SSN = re.compile(r"(?<!\d)\d{3}-\d{2}-(\d{4})(?!\d)")
_BEARER = re.compile(r"(?i)\b(sk|pk|rk)_(live|test)_[0-9A-Za-z]{8,}")
_GH = re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _mask_pan(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    if not _luhn(digits):
        return m.group(0)
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def scrub(text: str) -> str:
    """Mask card numbers, e-mail addresses, SSNs, JWTs and well-known key shapes.

    Idempotent on already-masked values (``411111******1111``, ``j***@example.org``).
    """
    if not text:
        return text
    text = _PAN.sub(_mask_pan, text)
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    text = _SSN.sub(r"***-**-\1", text)
    text = _JWT.sub("[jwt]", text)
    text = _AWS.sub("[aws-access-key]", text)
    text = _BEARER.sub("[stripe-key]", text)
    return _GH.sub("[github-token]", text)


def clean(text: object, max_len: int = 300, *, secret_safe: bool = True) -> str:
    """A printable one-line string of at most ``max_len`` characters, secrets masked.

    Masking runs before truncation, so a cut never leaves half a card number readable.
    """
    s = "" if text is None else str(text)
    s = s[: max_len + 100]  # room for a secret across the cut; masking comes first
    s = _WS.sub(" ", s)
    s = _CONTROL.sub("", s)
    if secret_safe:
        s = scrub(s)
    if len(s) > max_len:
        s = s[: max_len - 3] + "..."
    return s


def latin1(ch: str) -> bool:
    """Whether a core PDF font (Helvetica, Courier; WinAnsi encoding) can draw the character."""
    if ord(ch) < 128:
        return True
    try:
        ch.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def markup(
    text: object,
    *,
    max_len: int = 300,
    can_draw: Callable[[str], bool] = latin1,
    secret_safe: bool = True,
) -> str:
    """Text for a reportlab ``Paragraph``: scrubbed, cleaned, escaped, drawable.

    Long URLs wrap through the paragraph style (``splitLongWords``, ``uriWasteReduce``), so
    the text itself is not changed to make it break.
    """
    s = clean(text, max_len, secret_safe=secret_safe)
    s = "".join(ch if can_draw(ch) else "?" for ch in s)
    return escape(s, {'"': "&quot;"})
