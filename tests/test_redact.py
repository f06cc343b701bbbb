"""Redactor: masking in place, exposures, fast path, referers, user agents, user names,
hostile input, the regex audit, the redaction key, and the real corpus as negatives."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import auditor.percent
import auditor.pii
import auditor.pii_scan
import auditor.redact
import auditor.secrets
from auditor.errors import StoreError
from auditor.keys import KEY_BYTES, load_or_create_key
from auditor.model import PII_TYPES, Exposure
from auditor.percent import decode, decode_offsets
from auditor.redact import Redactor

KEY = bytes(range(32))


def jwt(alg: str = "HS256", sig: str = "c2lnbmF0dXJlLXZhbHVl") -> str:
    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64({'sub': '1234567890'})}.{sig}"


CARD = "4111111111111111"
EMAIL = "john.doe@example.com"
IBAN = "DE89370400440532013000"
AWS = "AKIA" + "Z5G7HJ3KL2MN4PQR"


@pytest.fixture
def r() -> Redactor:
    return Redactor(KEY)


def only(exposures: tuple[Exposure, ...]) -> Exposure:
    assert len(exposures) == 1, exposures
    return exposures[0]


# --- fast path ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/v1/users/42/orders", "page=2"),
        ("/api/v1/users/42/orders", None),
        ("/", None),
        ("/products", "page=2&limit=100"),
        ("/search", "q=red+shoes&sort=price"),
        ("/static/app.3f2a9c1b.js", None),
        ("/img/logo@2x.png", None),
        ("/api/orders/123e4567-e89b-12d3-a456-426614174000", "v=1.2.3.4"),
        ("/api", "_=1700000000000"),
        ("/login", "csrf_token=Zx9Qm2Lp8Rt5Vb7Nc3Kd&state=af0ifjsldkj&code=4/P7q7W91"),
        ("/p/SKU-12345-XL", "ref=v2.10.4"),
        ("/api", "id=4111111111111112"),  # fails Luhn
        ("/api", "order=9000000000000007"),  # passes Luhn, no IIN
    ],
)
def test_clean_targets_come_back_unchanged(r: Redactor, path: str, query: str | None) -> None:
    for _ in range(2):  # second round: from the clean cache
        p, q, ex = r.redact_target(path, query)
        assert p is path and q is query and ex == ()


def test_clean_referer_and_agent_come_back_unchanged(r: Redactor) -> None:
    for url in ["-", "", "https://shop.example.com/", "https://www.google.com/search?q=shoes"]:
        new, ex = r.redact_url(url, "referer")
        assert new is url and ex == ()
    ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"
    assert r.redact_text(ua) is ua
    assert r.redact_user("alice") == "alice" and r.redact_user("-") == "-"


# --- masking in place -----------------------------------------------------------------


def test_query_values_are_masked_in_place(r: Redactor) -> None:
    q = f"page=2&card={CARD}&email=john.doe%40example.com&password=hunter2&sort=price%20asc"
    p, new_q, ex = r.redact_target("/checkout", q)
    assert p == "/checkout"
    assert new_q == (
        "page=2&card=411111******1111&email=j***@example.com&password=[password]&sort=price%20asc"
    )
    assert [(e.pii_type, e.location, e.param, e.masked) for e in ex] == [
        ("pan", "query", "card", "411111******1111"),
        ("email", "query", "email", "j***@example.com"),
        ("password", "query", "password", "[password]"),
    ]


def test_path_segments_are_masked(r: Redactor) -> None:
    p, q, ex = r.redact_target(f"/users/{EMAIL}/cards/{CARD}/orders", None)
    assert p == "/users/j***@example.com/cards/411111******1111/orders" and q is None
    assert [(e.pii_type, e.location, e.param) for e in ex] == [
        ("email", "path", None),
        ("pan", "path", None),
    ]


def test_jsessionid_path_parameter(r: Redactor) -> None:
    p, _, ex = r.redact_target("/shop/cart.jsp;jsessionid=0A1B2C3D4E5F60718293A4B5C6D7E8F9", None)
    assert p == "/shop/cart.jsp;jsessionid=[session-id]"
    e = only(ex)
    assert (e.pii_type, e.location, e.param) == ("session-id", "path", "jsessionid")


def test_percent_decoding_up_to_twice_and_plus_as_space(r: Redactor) -> None:
    cases = {
        "e=john.doe%40example.com": "e=j***@example.com",
        "e=john.doe%2540example.com": "e=j***@example.com",
        "c=4111+1111+1111+1111&x=a+b": "c=411111******1111&x=a+b",
        "c=4111%201111%201111%201111": "c=411111******1111",
        "c=%34%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31": "c=411111******1111",
        "tel=%2B4915112345678": "tel=%2B***********78",  # a literal '+' would read as space
        "q=call+%2B4915112345678+now": "q=call+%2B***********78+now",
    }
    for query, expect in cases.items():
        assert r.redact_target("/", query)[1] == expect, query


def test_unmasked_parts_keep_their_encoding(r: Redactor) -> None:
    q = "a=%C3%A9t%C3%A9&e=x%2Bjohn%40example.com&b=%2F%3F%26&c=caf%E9"
    _, new_q, ex = r.redact_target("/", q)
    assert new_q == "a=%C3%A9t%C3%A9&e=x***@example.com&b=%2F%3F%26&c=caf%E9"
    assert only(ex).param == "e"


def test_encoded_parameter_names_are_decoded_for_context(r: Redactor) -> None:
    _, q, ex = r.redact_target("/", "user%5Bpassword%5D=s3cret&api%2Dkey=abcdefgh12345678")
    assert q == "user%5Bpassword%5D=[password]&api%2Dkey=[api-key]"
    assert [(e.pii_type, e.param) for e in ex] == [
        ("password", "user[password]"),
        ("api-key", "api-key"),
    ]


def test_obfuscated_credential_names(r: Redactor) -> None:
    _, q, ex = r.redact_target("/", "PassWord=x&passwor%64=y&pa%73sword=z")
    assert q == "PassWord=[password]&passwor%64=[password]&pa%73sword=[password]"
    assert [e.param for e in ex] == ["PassWord", "password", "password"]


def test_pii_in_a_parameter_name_is_masked(r: Redactor) -> None:
    _, q, ex = r.redact_target("/", f"{EMAIL}=1&{CARD}")
    assert q == "j***@example.com=1&411111******1111"
    assert [e.pii_type for e in ex] == ["email", "pan"]


def test_credentials_by_name_and_by_format(r: Redactor) -> None:
    token = jwt()
    query = (
        f"access_token={token}&api_key={AWS}&sid=0123456789abcdef0123&sid2=7"
        "&client_secret=Zx9Qm2Lp8Rt5&refresh_token=abc"
    )
    _, q, ex = r.redact_target("/oauth", query)
    assert q == (
        "access_token=[jwt]&api_key=[aws-access-key]&sid=[session-id]&sid2=7"
        "&client_secret=[api-key]&refresh_token=abc"
    )
    assert [e.pii_type for e in ex] == ["jwt", "aws-access-key", "session-id", "api-key"]


def test_jwt_alg_none_detail(r: Redactor) -> None:
    _, q, ex = r.redact_target("/", f"t={jwt('none', sig='')}")
    assert q == "t=[jwt]" and only(ex).detail == "alg:none"


def test_stripe_test_key_detail(r: Redactor) -> None:
    key = "sk_" + "test_" + "4eC39HqLyjWDarjtT1zdp7dc"
    _, q, ex = r.redact_target("/", f"k={key}")
    assert q == "k=[stripe-key]" and only(ex).detail == "test-key"


def test_basic_auth_inside_a_redirect_value(r: Redactor) -> None:
    _, q, ex = r.redact_target("/login", "next=https%3A%2F%2Fbob%3Ahunter2%40intra.example%2F")
    assert q == "next=https%3A%2F%2F***:***%40intra.example%2F"
    e = only(ex)
    assert (e.pii_type, e.masked, e.param) == (
        "basic-auth",
        "https://***:***@intra.example",
        "next",
    )


def test_presigned_s3_and_slack_webhook(r: Redactor) -> None:
    q = (
        f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={AWS}%2F20261120%2Fus-east-1%2Fs3"
        "%2Faws4_request&X-Amz-Signature=0f1e2d3c"
    )
    _, new_q, ex = r.redact_target("/bucket/report.pdf", q)
    assert new_q == q.replace(AWS, "[aws-access-key]")
    assert (only(ex).pii_type, only(ex).detail) == ("aws-access-key", "presigned-url")
    hook = "https://hooks.slack.com/services/T00000000/B00000000/" + "XXXXXXXXXXXXXXXXXXXXXXXX"
    _, new_q, ex = r.redact_target("/notify", f"url={quote(hook, safe='')}")
    assert only(ex).pii_type == "slack-token"
    assert new_q == "url=https%3A%2F%2Fhooks.slack.com%2Fservices%2F[slack-token]"


def test_absolute_form_target(r: Redactor) -> None:
    p, _, ex = r.redact_target("http://bob:hunter2@proxy.example/x", None)
    assert p == "http://***:***@proxy.example/x"
    assert only(ex).pii_type == "basic-auth"


def test_iban_ssn_phone_national_id(r: Redactor) -> None:
    q = f"iban={IBAN}&ssn=536-22-1234&phone=+4915112345678&dni=12345678Z"
    _, new_q, ex = r.redact_target("/", q)
    assert new_q == (
        "iban=DE****************3000&ssn=[ssn]&phone=%2B***********78&dni=[national-id]"
    )
    assert [e.pii_type for e in ex] == ["iban", "ssn", "phone", "national-id"]


def test_every_exposure_type_is_a_contract_type(r: Redactor) -> None:
    q = (
        f"a={EMAIL}&b={CARD}&c={IBAN}&d=536-22-1234&e=%2B4915112345678&pesel=44051401359"
        f"&f={jwt()}&g={AWS}&password=x&sid=0123456789abcdef0123"
    )
    _, _, ex = r.redact_target("/", q)
    assert {e.pii_type for e in ex} <= set(PII_TYPES)
    assert all(e.location == "query" for e in ex)


# --- digests --------------------------------------------------------------------------


def test_digest_is_keyed_and_normalized(r: Redactor) -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", r.digest("x"))
    assert r.digest("x") != Redactor(bytes(32)).digest("x")
    d1 = only(r.redact_target("/", "c=4111-1111-1111-1111")[2]).digest
    d2 = only(r.redact_target(f"/{CARD}", None)[2]).digest
    assert d1 == d2 == r.digest(CARD)
    e1 = only(r.redact_target("/", "e=John.Doe%40Example.COM")[2]).digest
    e2 = only(r.redact_target("/", f"e={EMAIL}")[2]).digest
    assert e1 == e2 == r.digest(EMAIL)
    assert r.digest("\ud800") == r.digest("\ud800")  # lone surrogates do not raise


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Redactor(b"short")


# --- referer, user agent, user --------------------------------------------------------


def test_referer_userinfo_query_and_fragment(r: Redactor) -> None:
    url = f"https://bob:hunter2@app.example.com/u/{EMAIL}?card={CARD}#access_token=Zx9Qm2Lp8Rt5"
    new, ex = r.redact_url(url, "referer")
    assert new == (
        "https://***:***@app.example.com/u/j***@example.com?card=411111******1111"
        "#access_token=[api-key]"
    )
    assert [(e.pii_type, e.location, e.param) for e in ex] == [
        ("basic-auth", "referer", None),
        ("email", "referer", None),
        ("pan", "referer", "card"),
        ("api-key", "referer", "access_token"),
    ]


def test_referer_user_without_password(r: Redactor) -> None:
    new, ex = r.redact_url(f"https://{quote(EMAIL)}@app.example.com/", "referer")
    assert new == "https://j***@example.com@app.example.com/"
    assert only(ex).pii_type == "email"


def test_user_agent_emails_are_masked_without_exposures(r: Redactor) -> None:
    ua = "Mozilla/5.0 (compatible; Ezooms/1.0; help@moz.com)"
    assert r.redact_text(ua) == "Mozilla/5.0 (compatible; Ezooms/1.0; h***@moz.com)"
    assert r.redact_text(f"bot {jwt()} {AWS} {CARD}") == (
        "bot [jwt] [aws-access-key] 411111******1111"
    )


def test_user_names(r: Redactor) -> None:
    masked = r.redact_user("John@Example.org")
    assert re.fullmatch(r"J\*\*\*@Example\.org#[0-9a-f]{8}", masked)
    assert masked == r.redact_user("John@Example.org")
    assert masked.split("#")[1] == r.redact_user("john@example.org").split("#")[1]
    assert masked != r.redact_user("jane@example.org")
    assert r.redact_user("alice.smith") == "alice.smith"
    assert r.redact_user(AWS).startswith("[aws-access-key]#")
    token = "Zx9Qm2Lp8Rt5Vb7Nc3KdWq4Tg6Yh1Uj0Ik"  # an API key logged as the basic-auth user
    assert r.redact_text(token) == token  # free text: not a known format
    assert r.redact_user(token).startswith("[api-key]#")
    assert r.redact_user("123e4567-e89b-12d3-a456-426614174000") == (
        "123e4567-e89b-12d3-a456-426614174000"
    )
    assert r.redact_user(masked) == masked  # idempotent


# --- idempotence and the never-store rule ---------------------------------------------


def test_redacting_redacted_output_changes_nothing(r: Redactor) -> None:
    path = f"/u/{EMAIL}/c/{CARD};jsessionid=0123456789ABCDEF0123"
    query = f"iban={IBAN}&password=x&t={jwt()}&p=%2B4915112345678&ssn=536221234&k={AWS}"
    p1, q1, ex1 = r.redact_target(path, query)
    assert len(ex1) == 9
    p2, q2, ex2 = r.redact_target(p1, q1)
    assert (p2, q2, ex2) == (p1, q1, ())
    ref = f"https://bob:pw@x.example/?e={EMAIL}"
    u1, _ = r.redact_url(ref, "referer")
    assert r.redact_url(u1, "referer") == (u1, ())
    t1 = r.redact_text(f"{EMAIL} {CARD}")
    assert r.redact_text(t1) == t1


def test_raw_values_never_survive(r: Redactor) -> None:
    secrets = [EMAIL, CARD, IBAN, "hunter2", AWS, "536-22-1234", "4915112345678"]
    query = (
        f"e={EMAIL}&c={CARD[:4]}+{CARD[4:8]}+{CARD[8:12]}+{CARD[12:]}&i={IBAN}"
        f"&password=hunter2&k={AWS}&s=536-22-1234&p=%2B4915112345678"
    )
    p, q, ex = r.redact_target(f"/x/{EMAIL}", query)
    blob = f"{p}?{q}{ex!r}"
    for s in secrets:
        assert s not in blob and s.replace("-", "") not in blob.replace("+", "")


# --- hostile input --------------------------------------------------------------------

HOSTILE = {
    "percents": "%" * 10**6,
    "a-at": "a@" * 500_000,
    "digits": "1" * 10**6,
    "spaced digits": "1 " * 500_000,
    "eyJ": "eyJ" * 333_334,
    "escapes": "%2540" * 200_000,
    "cards": f"{CARD} " * 58_000,
    "emails": f"{EMAIL}," * 50_000,
    "params": "password=x&" * 90_000,
    "dashes": "-" * 10**6,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_megabyte_input_does_not_raise(
    r: Redactor, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    s = HOSTILE[name]
    t0 = time.perf_counter()
    p, q, _ = r.redact_target("/" + s, s)
    url, _ = r.redact_url("https://x.example/" + s, "referer")
    text = r.redact_text(s)
    user = r.redact_user(s)
    elapsed = (time.perf_counter() - t0) * 1000
    with capsys.disabled():
        print(f"\n  hostile {name!r}: 4 calls on 1 MB in {elapsed:.0f} ms")
    for out in (p, q, url, text, user):
        assert isinstance(out, str)
        assert CARD not in (out or "") and EMAIL not in (out or "")


# --- the regex audit ------------------------------------------------------------------

_MODULES: list[ModuleType] = [
    auditor.redact,
    auditor.pii,
    auditor.secrets,
    auditor.pii_scan,
    auditor.percent,
]


def _patterns() -> list[tuple[str, re.Pattern[str]]]:
    out = []
    for mod in _MODULES:
        for name, value in vars(mod).items():
            if isinstance(value, re.Pattern):
                out.append((f"{mod.__name__}.{name}", value))
    return out


def _children(op: Any, av: Any) -> list[Any]:
    """The sub-pattern lists below one parsed node."""
    from re import _constants as c  # type: ignore[attr-defined]

    if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
        return [av[2]]
    if op is c.SUBPATTERN:
        return [av[3]]
    if op is c.ATOMIC_GROUP:
        return [av]
    if op in (c.ASSERT, c.ASSERT_NOT):
        return [av[1]]
    if op is c.BRANCH:
        return list(av[1])
    if op is c.GROUPREF_EXISTS:
        return [av[1]] + ([av[2]] if av[2] is not None else [])
    return []


def _varies(op: Any, av: Any) -> bool:
    from re import _constants as c  # type: ignore[attr-defined]

    if op not in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
        return False
    return bool(av[1] is c.MAXREPEAT or av[1] > av[0])


def _has_variable(items: Any) -> bool:
    return any(
        _varies(op, av) or any(_has_variable(ch) for ch in _children(op, av)) for op, av in items
    )


def _problems(pattern: str, flags: int) -> list[str]:
    """What makes a pattern super-linear: ``(a+)+`` style nesting, unbounded backtracking.

    A refinement of "a quantified group containing a quantifier": a fixed count inside
    (``(?:%[0-9A-F]{2})++``) is fine, and so is anything under a possessive repeat, which
    never gives characters back.
    """
    from re import _constants as c  # type: ignore[attr-defined]
    from re import _parser  # type: ignore[attr-defined]

    found: list[str] = []

    def walk(items: Any) -> None:
        for op, av in items:
            if _varies(op, av) and op is not c.POSSESSIVE_REPEAT:
                if av[1] is c.MAXREPEAT:
                    found.append("unbounded backtracking repeat")
                if _has_variable(av[2]):
                    found.append("variable repeat inside a variable repeat")
            for ch in _children(op, av):
                walk(ch)

    walk(_parser.parse(pattern, flags))
    return found


def test_regex_audit_finds_nesting_in_bad_patterns() -> None:
    assert _problems(r"(a+)+", 0)
    assert _problems(r"(?:[a-z]{1,9}\.){1,8}", 0)
    assert _problems(r"a*b", 0)
    assert not _problems(r"(?:%[0-9A-F]{2})++", 0)
    assert not _problems(r"[a-z]{1,64}+@[a-z]{1,9}", 0)


@pytest.mark.parametrize(("name", "pattern"), _patterns(), ids=lambda x: str(x)[:40])
def test_every_pattern_is_linear(name: str, pattern: re.Pattern[str]) -> None:
    assert _problems(pattern.pattern, pattern.flags) == [], name


def test_the_audit_sees_the_patterns() -> None:
    names = {n for n, _ in _patterns()}
    assert {"auditor.pii.EMAIL_RE", "auditor.secrets.JWT_RE", "auditor.redact._DIGITS_RE"} <= names


# --- percent decoding -----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["plain", "a%40b", "%2540x", "caf%C3%A9+%E9%zz%", "%F0%9F%98%80!", "%C3", "a+b%2Bc", "%"],
)
def test_decode_offsets_match_decode(raw: str) -> None:
    plus, formed = decode(raw, form=True)
    assert len(plus) == len(formed)
    offs = decode_offsets(raw)
    if offs is None:
        assert plus == raw
        return
    assert len(offs) == len(plus) + 1 and offs[-1] == len(raw)
    assert offs == sorted(offs) and offs[0] >= 0


# --- the redaction key ----------------------------------------------------------------


def test_key_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "audit.db.key"
    key = load_or_create_key(path)
    assert len(key) == KEY_BYTES == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create_key(path) == key
    assert load_or_create_key(tmp_path / "other.key") != key
    assert [p.name for p in path.parent.iterdir()] == ["audit.db.key"]  # no temp file left


def test_concurrent_first_use_gives_one_key(tmp_path: Path) -> None:
    path = tmp_path / "k"
    barrier = threading.Barrier(8)
    keys: list[bytes] = []

    def worker() -> None:
        barrier.wait()
        keys.append(load_or_create_key(path))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert path.read_bytes() == keys[0]


def test_bad_key_files_raise_store_error(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 5)
    with pytest.raises(StoreError, match=r"short\.key.*exactly 32 bytes"):
        load_or_create_key(short)
    (tmp_path / "dir.key").mkdir()
    with pytest.raises(StoreError, match="not a regular file"):
        load_or_create_key(tmp_path / "dir.key")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=r"file/sub/k: cannot (read|create) the redaction key"):
        load_or_create_key(blocker / "sub" / "k")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_key_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"x" * 32)
    path.chmod(0)
    with pytest.raises(StoreError, match="cannot read the redaction key"):
        load_or_create_key(path)


# --- the real corpus: a negative suite ------------------------------------------------

_CLEAR_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+\.[A-Za-z]{2,}")


def test_corpus_raises_no_false_exposures(corpus: Path) -> None:
    """Real logs carry no PII in URLs except phpBB session ids in a few referers."""
    from auditor.formats import FormatSpec, build_decoder
    from auditor.model import Line

    counts: dict[str, int] = {}
    seen = 0
    for f in sorted(p for p in corpus.rglob("*") if p.is_file()):
        if f.suffix in (".md", ".yaml", ".assert") or f.name.startswith(("LICENSE", "UPSTREAM")):
            continue
        decode = build_decoder(FormatSpec("auto"), Redactor(KEY), "corpus")
        offset = 0
        for text in f.read_text(encoding="utf-8", errors="replace").splitlines():
            ev = decode(Line("corpus", str(f), offset, offset + len(text) + 1, text))
            offset += len(text) + 1
            if ev is None:
                continue
            seen += 1
            for e in ev.exposures:
                counts[e.pii_type] = counts.get(e.pii_type, 0) + 1
                assert e.pii_type == "session-id" and e.location == "referer", (f.name, e)
            for field in (ev.path, ev.query, ev.referrer, ev.user_agent, ev.user_name):
                for m in _CLEAR_EMAIL.finditer(field or ""):
                    assert "***@" in m.group() or m.group().startswith("*"), (f.name, field)
    assert seen > 10_000
    assert counts.get("session-id", 0) <= 10


def test_card_verification_values_are_masked_sad() -> None:
    """CVV/CVC/PIN are sensitive authentication data (PCI DSS 3.3.1): never stored."""
    r = Redactor(b"k" * 32)
    _, q, xs = r.redact_target("/pay", "card=4111111111111111&cvv=123&cvc2=4567&pin=1234")
    assert q is not None and "123" not in q and "4567" not in q and "1234" not in q.split("&")[-1]
    assert [x.pii_type for x in xs].count("card-verification") == 3
    _, q2, xs2 = r.redact_target("/x", "pin=abc&spin=1234&cid=store7")
    assert q2 == "pin=abc&spin=1234&cid=store7" and xs2 == ()


def test_a_value_with_too_many_separated_card_candidates_is_masked_whole(r: Redactor) -> None:
    """Past MAX_GROUPED separated candidates the value is hostile: masked whole, fast."""
    value = "4111 1111 1111 1111 " * 400  # 400 Luhn-valid cards with separators
    _, query, _ = r.redact_target("/pay", "n=" + value.replace(" ", "%20"))
    assert query is not None
    assert "4111" not in query and "1111" not in query
    few = "4111 1111 1111 1111 " * 3
    _, query, expo = r.redact_target("/pay", "n=" + few.replace(" ", "%20"))
    assert query is not None and "411111" in query and len(expo) == 3


_TARGET_BITS = [
    "/api/v1/users/",
    "12345",
    "1234567",
    "4111-1111-1111-1111",
    "jo@example.com",
    "%40",
    "%3A",
    ";jsessionid=1",
    "AKIAIOSFODNN7EXAMPLE",
    "DE89370400440532013000",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
    "caf\u00e9",
    "A",
    "\n",
    "://",
    "/",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from(_TARGET_BITS), max_size=5).map("".join),
            st.one_of(
                st.none(),
                st.lists(
                    st.sampled_from([*_TARGET_BITS, "q=", "&", "token=", "page=2"]), max_size=4
                ).map("".join),
            ),
        ),
        max_size=30,
    )
)
def test_a_target_dirty_targets_leaves_out_comes_back_from_redact_target_as_it_is(
    targets: list[tuple[str, str | None]],
) -> None:
    """What a chunk's targets looked at together (``auditor.rowchunk``) leaves out,
    ``redact_target`` would give back unchanged, with no exposure."""
    red = Redactor(b"k" * 32)
    paths = [p for p, _ in targets]
    queries = [q for _, q in targets]
    dirty = set(red.dirty_targets(paths, queries))
    for i, (path, query) in enumerate(targets):
        if i not in dirty:
            assert Redactor(b"k" * 32).redact_target(path, query) == (path, query, ())
