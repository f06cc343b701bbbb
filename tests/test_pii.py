"""Validators and finders of auditor.pii / auditor.secrets / auditor.pii_scan, with the traps."""

from __future__ import annotations

import base64
import json

import pytest

from auditor.pii import (
    card_brand,
    e164_ok,
    email_domain_ok,
    find_emails,
    find_ibans,
    find_national_id,
    find_pans,
    find_phones,
    find_ssns,
    hetu_ok,
    iban_ok,
    key_context,
    luhn_ok,
    mask_iban,
    mask_pan,
    nif_ok,
    pan_ok,
    personnummer_ok,
    pesel_ok,
)
from auditor.pii_scan import scan_text, scan_value
from auditor.secrets import (
    canonical_key,
    credential_kind,
    entropy,
    find_basic_auth,
    find_jwts,
    find_keys,
    is_placeholder,
    jwt_header,
)


def luhn_complete(prefix: str, length: int) -> str:
    """``prefix`` padded with zeros to ``length - 1`` digits plus the Luhn check digit."""
    body = prefix.ljust(length - 1, "0")
    for d in "0123456789":
        if luhn_ok(body + d):
            return body + d
    raise AssertionError("unreachable")


def b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def jwt(alg: str = "HS256", sig: str = "c2lnbmF0dXJlLXZhbHVl") -> str:
    return f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64({'sub': '1234567890', 'n': 'J'})}.{sig}"


# --- cards ----------------------------------------------------------------------------

VALID_PANS = [
    "4111111111111111",  # Visa
    "4012888888881881",
    "5555555555554444",  # Mastercard
    "2223000048400011",  # Mastercard 2-series
    "378282246310005",  # Amex
    "6011111111111117",  # Discover
    "3530111333300000",  # JCB
    "30569309025904",  # Diners 14
    "6200000000000005",  # UnionPay
    luhn_complete("6759", 16),  # Maestro
    luhn_complete("2200", 16),  # Mir
]


@pytest.mark.parametrize("pan", VALID_PANS)
def test_known_test_cards_validate(pan: str) -> None:
    assert pan_ok(pan)
    assert card_brand(pan) is not None
    [f] = find_pans(f"card {pan} end")
    assert f.pii_type == "pan" and f.norm == pan


@pytest.mark.parametrize(
    "digits",
    [
        "4111111111111112",  # 16-digit id failing Luhn
        luhn_complete("1", 16),  # passes Luhn, no IIN: an order id
        luhn_complete("9", 16),
        luhn_complete("7", 16),
        "1700000000000",  # millisecond timestamp
        luhn_complete("17000000", 13),  # ... even when it passes Luhn
        "0000000000000000",
        "4444444444444444",  # one repeated digit
        luhn_complete("34", 16),  # Amex prefix with a wrong length
        luhn_complete("51", 15),  # Mastercard prefix with a wrong length
        "41111111111111111111",  # 20 digits
    ],
)
def test_trap_numbers_are_not_pans(digits: str) -> None:
    assert not pan_ok(digits)
    assert find_pans(f"id={digits}") == []


def test_thirteen_digits_need_card_context() -> None:
    visa13 = luhn_complete("4222222", 13)
    assert find_pans(visa13) == []
    assert [f.norm for f in find_pans(visa13, card_context=True)] == [visa13]


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("4111 1111 1111 1111", "4111111111111111"),
        ("4111-1111-1111-1111", "4111111111111111"),
        ("3782 822463 10005", "378282246310005"),
        ("2024 4111 1111 1111 1111 99", "4111111111111111"),  # groups around it
        ("order 12 4111-1111-1111-1111.", "4111111111111111"),
    ],
)
def test_separated_cards(text: str, expect: str) -> None:
    assert [f.norm for f in find_pans(text)] == [expect]
    f = find_pans(text)[0]
    assert text[f.start : f.end].replace(" ", "").replace("-", "") == expect


def test_pan_mask_keeps_at_most_first_six_and_last_four() -> None:
    assert mask_pan("4111111111111111") == "411111******1111"
    assert mask_pan("378282246310005") == "***********0005"  # < 6 hidden: last 4 only
    for pan in VALID_PANS:
        m = mask_pan(pan)
        assert len(m) == len(pan) and m.count("*") >= 6 and m.endswith(pan[-4:])


# --- e-mail ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["john@example.com", "John.Doe+tag@mail.example.co.uk", "a_b-c@sub.example.museum"],
)
def test_emails(text: str) -> None:
    [f] = find_emails(f"x {text} y")
    assert f.pii_type == "email" and f.norm == text.lower()
    assert f.masked == f"{text[0]}***@{text.split('@')[1]}"


@pytest.mark.parametrize(
    "text",
    [
        "logo@2x.png",
        "icon@3x.webp",
        "/npm/bootstrap@5.3.0/dist/css/bootstrap.min.css",
        "jquery@3.7.1.min.js",
        "git@github.com:org/repo.git",
        "user@localhost",
        "a@b",
        "@example.com",
        "x@-bad-.com",
    ],
)
def test_email_traps(text: str) -> None:
    assert find_emails(text) == []


def test_email_domain_rules() -> None:
    assert email_domain_ok("example.org")
    assert email_domain_ok("xn--bcher-kva.example")
    assert not email_domain_ok("example")
    assert not email_domain_ok("2x.png")
    assert not email_domain_ok("example.c0m")


# --- IBAN -----------------------------------------------------------------------------

VALID_IBANS = [
    "DE89370400440532013000",
    "GB82WEST12345698765432",
    "FR1420041010050500013M02606",
    "NL91ABNA0417164300",
    "BE68539007547034",
    "ES9121000418450200051332",
    "IT60X0542811101000000123456",
    "PL61109010140000071219812874",
    "NO9386011117947",
    "CH9300762011623852957",
]


@pytest.mark.parametrize("iban", VALID_IBANS)
def test_ibans(iban: str) -> None:
    assert iban_ok(iban)
    spaced = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    for text in (iban, spaced, iban.lower()):
        [f] = find_ibans(f"pay {text}, thanks")
        assert f.norm == iban and f.masked == mask_iban(iban)
    assert mask_iban(iban).endswith(iban[-4:]) and mask_iban(iban)[:2] == iban[:2]
    assert sum(c.isalnum() for c in mask_iban(iban)) == 6


@pytest.mark.parametrize(
    "text",
    [
        "DE89370400440532013001",  # bad check
        "DE8937040044053201300",  # wrong length
        "XX89370400440532013000",  # no such country
        "DE89370400440532013000ABC",  # part of a longer token
        "De89370400440532013000aB",  # mixed case id
        "d41d8cd98f00b204e9800998ecf8427e",  # md5
    ],
)
def test_iban_traps(text: str) -> None:
    assert find_ibans(text) == []


# --- SSN, phone, national ids -----------------------------------------------------------


def test_ssn_dashed_anywhere_bare_only_with_key() -> None:
    assert [f.norm for f in find_ssns("ssn 536-22-1234.", False)] == ["536221234"]
    assert find_ssns("536221234", False) == []
    assert [f.norm for f in find_ssns("536221234", True)] == ["536221234"]
    assert [f.norm for f in find_ssns("536 22 1234", True)] == ["536221234"]
    assert find_ssns("536 22-1234", True) == []  # mixed delimiters


@pytest.mark.parametrize(
    "ssn",
    ["000-12-3456", "666-12-3456", "900-12-3456", "536-00-1234", "536-22-0000", "111-11-1111"]
    + ["123-45-6789", "078-05-1120", "SKU-123-45-6789", "2024-123-45-6789"],
)
def test_ssn_traps(ssn: str) -> None:
    assert find_ssns(ssn, False) == []


@pytest.mark.parametrize(
    "number", ["+4915112345678", "+14155552671", "+442071838750", "+33612345678"]
)
def test_e164(number: str) -> None:
    assert e164_ok(number[1:])
    [f] = find_phones(f"call {number} now", f"call {number} now", False)
    assert f.norm == number[1:] and f.masked.endswith(number[-2:]) and f.masked[0] == "+"
    assert f.masked.count("*") == len(number) - 3


def test_phone_forms() -> None:
    # "+" form-decoded to a space: the '+'-kept text still has it
    assert [f.norm for f in find_phones(" 4915112345678", "+4915112345678", False)] == [
        "4915112345678"
    ]
    # bare digits only under a phone key
    assert find_phones("030 1234567", "030 1234567", False) == []
    [f] = find_phones("030 1234567", "030 1234567", True)
    assert f.norm == "0301234567" and f.masked == "********67"
    assert find_phones("+1234", "+1234", False) == []  # too short
    assert find_phones("+10555552671", "+10555552671", False) == []  # NANP area 0xx
    assert find_phones("id+4915112345678", "id+4915112345678", False) == []  # glued to a word


@pytest.mark.parametrize(
    ("value", "check"),
    [
        ("12345678Z", nif_ok),
        ("X1234567L", nif_ok),
        ("44051401359", pesel_ok),
        ("811218-9876", personnummer_ok),
        ("19811218-9876", personnummer_ok),
        ("131052-308T", hetu_ok),
    ],
)
def test_national_ids(value: str, check: object) -> None:
    assert callable(check) and check(value)
    [f] = find_national_id(value)
    assert f.pii_type == "national-id" and f.masked == "[national-id]"


@pytest.mark.parametrize(
    "value", ["12345678A", "X1234567A", "44051401358", "811218-9875", "131052-308A", "12345"]
)
def test_national_id_traps(value: str) -> None:
    assert find_national_id(value) == []


def test_key_context() -> None:
    assert key_context("cardnumber") == "card" and key_context("cc") == "card"
    assert key_context("ssn") == "ssn" and key_context("socialsecuritynumber") == "ssn"
    assert key_context("phone") == "phone" and key_context("msisdn") == "phone"
    assert key_context("pesel") == "national-id" and key_context("dni") == "national-id"
    assert key_context("page") is None and key_context("") is None


# --- secrets --------------------------------------------------------------------------


def test_jwt_and_alg_none() -> None:
    token = jwt()
    assert jwt_header(token) == {"alg": "HS256", "typ": "JWT"}
    [f] = find_jwts(f"Bearer {token}")
    assert f.pii_type == "jwt" and f.masked == "[jwt]" and f.detail is None
    [f] = find_jwts(jwt("none", sig=""))
    assert f.detail == "alg:none"
    [f] = find_jwts(jwt("HS256", sig=""))
    assert f.detail == "alg:none"  # an empty signature is as good as none


def test_jwt_traps() -> None:
    state = b64({"returnTo": "/account"})
    assert find_jwts(state) == []  # one eyJ blob: OAuth state, not a token
    assert find_jwts(f"{state}.{state}.x") == []  # no "alg" in the header
    assert find_jwts("eyJ" * 100) == []


def test_key_formats() -> None:
    aws = "AKIA" + "Z5G7HJ3KL2MN4PQR"
    google = "AIza" + "SyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI"
    github = "ghp_" + "16C7e42F292c6912E7710c838347Ae178B4a"
    stripe = "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc"
    stripe_test = "rk_" + "test_" + "4eC39HqLyjWDarjtT1zdp7dc"
    slack = "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
    text = f"{aws} {google} {github} {stripe} {stripe_test} {slack}"
    found = {(f.pii_type, f.norm, f.detail) for f in find_keys(text)}
    assert found == {
        ("aws-access-key", aws, None),
        ("google-api-key", google, None),
        ("github-token", github, None),
        ("stripe-key", stripe, None),
        ("stripe-key", stripe_test, "test-key"),
        ("slack-token", slack, None),
    }
    assert find_keys("ASIA" + "Z5G7HJ3KL2MN4PQR")[0].detail == "temporary"
    assert find_keys(aws, presigned=True)[0].detail == "presigned-url"


def test_key_format_traps() -> None:
    assert find_keys("AKIAIOSFODNN7EXAMPLE") == []  # AWS documentation example
    assert find_keys("AKIA" + "A" * 16) == []  # no entropy
    assert find_keys("pk_live_4eC39HqLyjWDarjtT1zdp7dc") == []  # publishable: public
    assert find_keys("xAKIAZ5G7HJ3KL2MN4PQR") == []  # inside a longer token


def test_basic_auth() -> None:
    [f] = find_basic_auth("see https://bob:s3cret@example.com/x")
    assert f.pii_type == "basic-auth" and f.norm == "bob:s3cret"
    assert f.masked == "https://***:***@example.com" and f.repl == "***:***"
    assert find_basic_auth("https://$USER:${PASS}@example.com") == []
    assert find_basic_auth("https://user:pass@httpbin.org/basic-auth") == []
    assert find_basic_auth("https://***:***@example.com") == []
    assert find_basic_auth("https://bob@example.com") == []  # no password


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("password", "password"),
        ("user[password]", "password"),
        ("new_password", "password"),
        ("pwd", "password"),
        ("passphrase", "password"),
        ("api_key", "api-key"),
        ("X-Api-Key", "api-key"),
        ("apiKey", "api-key"),
        ("access_token", "api-key"),
        ("refresh_token", "api-key"),
        ("id_token", "api-key"),
        ("token", "api-key"),
        ("client_secret", "api-key"),
        ("private_key", "api-key"),
        ("PHPSESSID", "session-id"),
        ("JSESSIONID", "session-id"),
        ("session_id", "session-id"),
        ("sid", "session-id"),
        ("ASPSESSIONIDQQGGQGPC", "session-id"),
        ("csrf_token", None),
        ("csrfmiddlewaretoken", None),
        ("authenticity_token", None),
        ("state", None),
        ("code", None),
        ("key_id", None),
        ("public_token", None),
        ("page_token", None),
        ("page", None),
        ("key", None),  # bare "key" needs a random-looking value (bare_key_is_secret)
    ],
)
def test_credential_names(name: str, kind: str | None) -> None:
    assert credential_kind(canonical_key(name)) == kind


def test_placeholders_are_not_secrets() -> None:
    for v in ["", "***", "null", "undefined", "${PASSWORD}", "{{token}}", "<secret>", "[password]"]:
        assert is_placeholder(v), v
    assert not is_placeholder("hunter2")


def test_entropy() -> None:
    assert entropy("") == 0.0
    assert entropy("aaaa") == 0.0
    assert entropy("abcd") == 2.0


# --- scan_value: context, priority, traps ---------------------------------------------


def kinds(value: str, key: str = "", form: bool = True) -> list[str]:
    formed = value.replace("+", " ") if form else value
    return [f.pii_type for f in scan_value(formed, value, canonical_key(key))]


def test_credential_values_by_name() -> None:
    assert kinds("hunter2", "password") == ["password"]
    assert kinds(jwt(), "id_token") == ["jwt"]  # the format wins over the name
    assert kinds("abc", "token") == []  # too short for a token
    assert kinds("0123456789abcdef0123", "sid") == ["session-id"]
    assert kinds("42", "sid") == []  # a site id
    assert kinds("***", "password") == []
    assert kinds("Zx9Qm2Lp8Rt5Vb7Nc3Kd", "key") == ["api-key"]
    assert kinds("products/2024/a.png", "key") == []


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("2", "page"),
        ("100", "limit"),
        ("1700000000000", "_"),
        ("1700000000000", "ts"),
        ("123e4567-e89b-12d3-a456-426614174000", "id"),
        ("1.2.3.4", "v"),
        ("v2.10.4", "version"),
        ("SKU-12345-XL", "sku"),
        ("100000123456", "order_id"),
        ("4111111111111112", "order_id"),
        ("d41d8cd98f00b204e9800998ecf8427e", "h"),
        ("da39a3ee5e6b4b0d3255bfef95601890afd80709", "sha1"),
        ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha256"),
        ("Zx9Qm2Lp8Rt5Vb7Nc3KdWq", "csrf_token"),
        ("Zx9Qm2Lp8Rt5Vb7Nc3KdWq", "state"),
        ("4/0AX4XfWh-Zx9Qm2Lp8Rt5Vb7Nc3Kd", "code"),
        ("2024-01-15", "date"),
        ("12:30:45", "t"),
        ("+1234", "q"),
    ],
)
def test_value_traps_stay_quiet(value: str, key: str) -> None:
    assert kinds(value, key) == []


def test_context_decides_bare_numbers() -> None:
    assert kinds("536221234", "ssn") == ["ssn"]
    assert kinds("536221234", "id") == []
    assert kinds("+4915112345678", "phone") == ["phone"]
    assert kinds("0301234567", "phone") == ["phone"]
    assert kinds("0301234567", "n") == []
    assert kinds("44051401359", "pesel") == ["national-id"]
    assert kinds("44051401359", "n") == []


def test_overlaps_earlier_detector_wins() -> None:
    token = jwt()
    assert kinds(f"{token} john@example.com") == ["jwt", "email"]
    assert kinds("DE89370400440532013000") == ["iban"]
    assert kinds("4111111111111111@example.com") == ["email"]


def test_nested_query_in_a_value() -> None:
    found = scan_value(
        "https://app.example/cb?access_token=Zx9Qm2Lp8Rt5Vb7N&x=1",
        "https://app.example/cb?access_token=Zx9Qm2Lp8Rt5Vb7N&x=1",
    )
    assert [(f.pii_type, f.norm) for f in found] == [("api-key", "Zx9Qm2Lp8Rt5Vb7N")]


def test_scan_text_for_user_agents() -> None:
    ua = "Mozilla/5.0 (compatible; Ezooms/1.0; help@moz.com)"
    assert [f.pii_type for f in scan_text(ua)] == ["email"]
    chrome = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36"
    )
    assert scan_text(chrome) == []
    assert [f.pii_type for f in scan_text("Zx9Qm2Lp8Rt5Vb7Nc3KdWq4Tg6Yh1Uj0Ik", user=True)] == [
        "api-key"
    ]
    assert scan_text("123e4567-e89b-12d3-a456-426614174000", user=True) == []
