"""Hypothesis properties of the redactor.

- it never raises, whatever the text;
- a valid card number / e-mail / IBAN / JWT planted anywhere in a path segment or a query
  value (raw, percent-encoded once or twice, cards with separators) never survives, in
  any form, and comes back as an Exposure of the right type;
- redacting redacted output finds nothing and changes nothing.
"""

from __future__ import annotations

import base64
import json
import os
from urllib.parse import quote, unquote

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from auditor.pii import IBAN_LENGTHS, luhn_ok
from auditor.redact import Redactor

KEY = bytes(range(32))
R = Redactor(KEY)
# PII_EXAMPLES=5000 for a longer hunt
SETTINGS = settings(
    max_examples=int(os.environ.get("PII_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# --- generators -----------------------------------------------------------------------

# (prefix, length) pairs taken from the IIN table, all lengths >= 14 (13 needs a card key)
_BRANDS = [
    ("4", 16), ("4", 19), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15),
    ("37", 15), ("6011", 16), ("65", 16), ("3528", 16), ("3589", 19), ("36", 14),
    ("300", 16), ("62", 17), ("81", 19), ("6759", 16), ("2200", 16),
]  # fmt: skip


@st.composite
def cards(draw: st.DrawFn) -> str:
    prefix, length = draw(st.sampled_from(_BRANDS))
    body = prefix + draw(
        st.text("0123456789", min_size=length - 1 - len(prefix), max_size=length - 1 - len(prefix))
    )
    assume(body.count(body[0]) != len(body))
    for d in "0123456789":
        if luhn_ok(body + d):
            return body + d
    raise AssertionError("no check digit")


def spaced(card: str, sep: str) -> str:
    return sep.join(card[i : i + 4] for i in range(0, len(card), 4))


_TLDS = ["com", "org", "net", "de", "io", "co.uk", "example", "museum", "info"]
_LOCAL = "abcdefghijklmnopqrstuvwxyz0123456789"


@st.composite
def emails(draw: st.DrawFn) -> str:
    first = draw(st.sampled_from(_LOCAL))
    rest = draw(st.text(_LOCAL + "._+-", max_size=20))
    local = (first + rest).rstrip(".")
    label = draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12))
    return f"{local}@{label}.{draw(st.sampled_from(_TLDS))}"


@st.composite
def ibans(draw: st.DrawFn) -> str:
    cc = draw(st.sampled_from(sorted(IBAN_LENGTHS)))
    bban = draw(
        st.text(
            "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            min_size=IBAN_LENGTHS[cc] - 4,
            max_size=IBAN_LENGTHS[cc] - 4,
        )
    )
    num = int("".join(str(int(c, 36)) for c in bban + cc + "00"))
    return f"{cc}{98 - num % 97:02d}{bban}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def jwts(draw: st.DrawFn) -> str:
    alg = draw(st.sampled_from(["HS256", "RS256", "ES384", "none"]))
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    claims = {"sub": draw(st.text(max_size=30)), "iat": draw(st.integers(0, 2**31))}
    payload = _b64(json.dumps(claims).encode())
    sig = "" if alg == "none" else _b64(draw(st.binary(min_size=16, max_size=64)))
    return f"{header}.{payload}.{sig}"


PLANTS = st.one_of(
    cards().map(lambda c: ("pan", c, c)),
    st.tuples(cards(), st.sampled_from([" ", "-"])).map(lambda t: ("pan", t[0], spaced(*t))),
    emails().map(lambda e: ("email", e, e)),
    ibans().map(lambda i: ("iban", i, i)),
    jwts().map(lambda j: ("jwt", j, j)),
)
# neutral surroundings and parameter names (a credential name would mask the whole value)
AROUND = st.sampled_from(["", " ", "(", ")", ",", ": ", "; "])
NAMES = st.sampled_from(["v", "data", "ref", "q", "next"])


def encode(text: str, times: int, in_path: bool) -> str:
    for _ in range(times):
        text = quote(text, safe="" if times else "/")
    if times == 0 and not in_path:
        text = text.replace("&", "%26").replace("#", "%23")
    return text


def decoded_forms(s: str) -> list[str]:
    once = unquote(s)
    return [s, once, unquote(once), s.replace("+", " "), once.replace("+", " ")]


# --- properties -----------------------------------------------------------------------


@SETTINGS
@given(st.text(max_size=200), st.one_of(st.none(), st.text(max_size=200)), st.text(max_size=200))
def test_never_raises(path: str, query: str | None, text: str) -> None:
    p, q, ex = R.redact_target(path, query)
    assert isinstance(p, str) and (q is None) == (query is None)
    url, ex2 = R.redact_url(text, "referer")
    assert isinstance(url, str)
    assert isinstance(R.redact_text(text), str) and isinstance(R.redact_user(text), str)
    for e in ex + ex2:
        assert len(e.digest) == 16


@SETTINGS
@given(PLANTS, AROUND, AROUND, st.integers(0, 2), st.booleans(), NAMES)
def test_planted_values_never_survive(
    plant: tuple[str, str, str],
    before: str,
    after: str,
    times: int,
    in_path: bool,
    name: str,
) -> None:
    kind, raw, shown = plant
    value = encode(before + shown + after, times, in_path)
    if in_path:
        value = value.replace("/", "%2F") if times == 0 else value
        path, query = f"/api/{value}/orders", "page=2"
    else:
        path, query = "/api/orders", f"page=2&{name}={value}&limit=100"
    p, q, ex = R.redact_target(path, query)
    out = f"{p}?{q}"
    digits = "".join(c for c in raw if c.isdigit())
    for form in decoded_forms(out):
        assert raw not in form
        assert raw.lower() not in form.lower()
        if kind == "pan":
            assert digits not in "".join(c for c in form if c.isdigit() or c == "*").replace(
                "*", "|"
            )
    assert kind in {e.pii_type for e in ex}, (out, ex)
    hit = next(e for e in ex if e.pii_type == kind)
    assert hit.location == ("path" if in_path else "query")
    assert hit.param == (None if in_path else name)
    if kind in ("pan", "iban"):
        assert hit.digest == R.digest(raw if kind == "iban" else digits)
    if kind == "email":
        assert hit.digest == R.digest(raw.lower())
    # untouched neighbours keep their exact text
    if not in_path:
        assert q is not None and q.startswith("page=2&") and q.endswith("&limit=100")
    else:
        assert p.startswith("/api/") and p.endswith("/orders")


@SETTINGS
@given(PLANTS, AROUND, st.integers(0, 2), NAMES)
def test_redaction_is_idempotent(
    plant: tuple[str, str, str], around: str, times: int, name: str
) -> None:
    _, _, shown = plant
    value = encode(around + shown, times, False)
    p1, q1, _ = R.redact_target(
        f"/u/{encode(shown, times, True).replace('/', '%2F')}", f"{name}={value}"
    )
    p2, q2, ex2 = R.redact_target(p1, q1)
    assert (p2, q2, ex2) == (p1, q1, ())
    url1, _ = R.redact_url(f"https://ref.example/{p1}?{q1}", "referer")
    assert R.redact_url(url1, "referer") == (url1, ())
    t1 = R.redact_text(f"bot {shown} ok")
    assert R.redact_text(t1) == t1
    u1 = R.redact_user(shown)
    assert R.redact_user(u1) == u1


@SETTINGS
@given(st.text(max_size=120), st.one_of(st.none(), st.text(max_size=120)))
def test_idempotent_on_arbitrary_text(path: str, query: str | None) -> None:
    p1, q1, _ = R.redact_target(path, query)
    p2, q2, ex2 = R.redact_target(p1, q1)
    assert (p2, q2, ex2) == (p1, q1, ())
    t1 = R.redact_text(path)
    assert R.redact_text(t1) == t1


# text made of the characters the detectors care about, to hit their edges
PII_ALPHABET = "0123456789 @.%+-_=&/;:#abcmoxyzeJAKIS4"


@SETTINGS
@given(st.text(PII_ALPHABET, max_size=80), st.text(PII_ALPHABET, max_size=80))
def test_idempotent_on_pii_like_text(path: str, query: str) -> None:
    p1, q1, _ = R.redact_target(path, query)
    assert R.redact_target(p1, q1) == (p1, q1, ())
    u1, _ = R.redact_url(query, "referer")
    assert R.redact_url(u1, "referer") == (u1, ())
    t1 = R.redact_text(query)
    assert R.redact_text(t1) == t1
