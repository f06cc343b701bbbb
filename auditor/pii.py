"""Validators and finders for personal data in URL values (catalogue §2).

Each finder takes one decoded value and returns ``Found`` spans with the masked form and
the normalized raw value (for the keyed digest). A regex only proposes a candidate; a
validator (Luhn + IIN, IBAN mod-97, SSN ranges, national-id check digits, TLD sanity)
decides, because URLs are full of long numbers that are not personal data.

Every pattern is linear: bounded quantifiers, no nested variable quantifiers, a lookbehind
at the start so a candidate can only begin at a token boundary, and possessive loops where
the next item cannot match the looped class anyway.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Found(NamedTuple):
    """One sensitive value inside a decoded string; ``norm`` never leaves the redactor."""

    start: int
    end: int
    pii_type: str
    masked: str  # what the Exposure shows
    norm: str  # normalized raw value, input of the keyed digest
    detail: str | None = None
    repl: str | None = None  # what replaces start:end when it differs from ``masked``


class TooManyCandidates(Exception):
    """A value holds more candidates than any real URL would: the caller masks all of it."""


MAX_CANDIDATES = 1024  # regex candidates examined per finder and value
MAX_FOUND = 64  # validated finds per finder and value


def check_limits(n_candidates: int, n_found: int) -> None:
    if n_candidates >= MAX_CANDIDATES or n_found > MAX_FOUND:
        raise TooManyCandidates


# --- e-mail ---------------------------------------------------------------------------

EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-]{1,64}+)@([A-Za-z0-9-]{1,63}+\.[A-Za-z0-9.-]{2,190}+)"
)
# File extensions that follow "@" in asset names (logo@2x.png) and are not real TLDs
# (real ccTLDs such as .md, .py, .pl, .so, .sh are deliberately absent).
_FILE_EXTS = frozenset(
    {
        "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tif", "tiff", "avif", "heic",
        "css", "js", "mjs", "cjs", "map", "json", "xml", "html", "htm", "php", "asp", "aspx",
        "jsp", "txt", "pdf", "woff", "woff2", "ttf", "otf", "eot", "mp3", "mp4", "webm", "ogg",
        "wav", "zip", "gz", "tgz", "rar", "exe", "dll", "bin", "dat", "csv", "yaml", "yml",
        "toml", "scss", "less", "lock", "log", "bak", "tmp", "sql", "sqlite", "env", "ini",
        "cfg", "conf", "jar", "war",
    }
)  # fmt: skip
_TLD_RE = re.compile(r"[A-Za-z]{2,24}|[Xx][Nn]--[A-Za-z0-9-]{1,59}")


def email_domain_ok(domain: str) -> bool:
    """True when ``domain`` has >= 2 sane labels and a letters-only TLD that is not a file type."""
    labels = domain.split(".")
    if len(labels) < 2:
        return False
    tld = labels[-1]
    if _TLD_RE.fullmatch(tld) is None or tld.lower() in _FILE_EXTS:
        return False
    return all(0 < len(label) <= 63 and label[0] != "-" and label[-1] != "-" for label in labels)


def mask_email(local: str, domain: str) -> str:
    """``john.doe@example.org`` -> ``j***@example.org`` (domain kept for context)."""
    first = local[0] if local[0].isalnum() else "*"
    return f"{first}***@{domain}"


def find_emails(text: str) -> list[Found]:
    out: list[Found] = []
    for n, m in enumerate(EMAIL_RE.finditer(text)):
        check_limits(n, len(out))
        local, domain = m.group(1), m.group(2).rstrip(".-")
        if not any(c.isalnum() for c in local) or local.lower() == "git":
            continue  # "git@github.com:org/repo" is an SSH remote, not a mailbox
        if not email_domain_ok(domain):
            continue
        end = m.start(2) + len(domain)
        norm = f"{local}@{domain}".lower()
        out.append(Found(m.start(), end, "email", mask_email(local, domain), norm))
    return out


# --- payment cards --------------------------------------------------------------------

PAN_RE = re.compile(r"(?<![0-9])[0-9][0-9 -]{11,70}[0-9](?![0-9])")
_GROUP_RE = re.compile(r"(?<![0-9])[0-9]{1,19}+(?![0-9])")
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        total += _DOUBLED[n] if i & 1 else n
    return total % 10 == 0


def card_brand(d: str) -> str | None:
    """The brand whose IIN range and length fit ``d`` (catalogue IIN table), else None."""
    n = len(d)
    p2, p3, p4, p6 = int(d[:2]), int(d[:3]), int(d[:4]), int(d[:6])
    if d[0] == "4":
        return "visa" if n in (13, 16, 18, 19) else None
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return "mastercard" if n == 16 else None
    if p2 in (34, 37):
        return "amex" if n == 15 else None
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65:
        return "discover" if n in (16, 19) else None
    if 3528 <= p4 <= 3589:
        return "jcb" if 16 <= n <= 19 else None
    if 300 <= p3 <= 305 or p2 in (36, 38, 39):
        return "diners" if 14 <= n <= 19 else None
    if p2 in (62, 81):
        return "unionpay" if 14 <= n <= 19 else None
    if 500000 <= p6 <= 508999 or 56 <= p2 <= 59 or p2 in (63, 67):
        return "maestro" if 12 <= n <= 19 else None
    if 2200 <= p4 <= 2204:
        return "mir" if 16 <= n <= 19 else None
    return None


def pan_ok(d: str, card_context: bool = False) -> bool:
    """Length 13-19, IIN + length, Luhn, not one repeated digit.

    13 digits (legacy Visa, some Maestro) collide with millisecond timestamps and EAN-13
    barcodes, so they count only where the parameter name says "card".
    """
    n = len(d)
    if n < 13 or n > 19 or (n == 13 and not card_context):
        return False
    if d.count(d[0]) == n:
        return False
    return card_brand(d) is not None and luhn_ok(d)


def mask_pan(d: str) -> str:
    """First 6 + last 4 when at least 6 digits stay hidden (16-19 digits), else last 4 only."""
    n = len(d)
    if n >= 16:
        return d[:6] + "*" * (n - 10) + d[-4:]
    return "*" * (n - 4) + d[-4:]


# Separated candidates cost a walk over their digit groups (~130 µs for a 70-character
# one): a value with more of them than any real URL carries is hostile, and is masked whole.
MAX_GROUPED = 128


def find_pans(text: str, card_context: bool = False) -> list[Found]:
    out: list[Found] = []
    grouped = 0
    for n, m in enumerate(PAN_RE.finditer(text)):
        check_limits(n, len(out))
        cand = m.group()
        base = m.start()
        if cand.isdigit():
            if pan_ok(cand, card_context):
                out.append(Found(base, m.end(), "pan", mask_pan(cand), cand))
            continue
        grouped += 1
        if grouped > MAX_GROUPED:
            raise TooManyCandidates
        out.extend(_pans_in_groups(cand, base, card_context))
    return out


def _pans_in_groups(cand: str, base: int, card_context: bool) -> list[Found]:
    """Separated digits ("4111 1111-1111 1111"): try runs of adjacent digit groups.

    A run starts at a group of >= 3 digits (every card layout does) and takes the
    following groups whatever their size (4-4-4-2 for 14 digits).
    """
    groups = [(g.start(), g.end()) for g in _GROUP_RE.finditer(cand)]
    out: list[Found] = []
    i = 0
    while i < len(groups):
        if groups[i][1] - groups[i][0] < 3:
            i += 1
            continue
        best: tuple[int, str] | None = None
        digits = ""
        for j in range(i, len(groups)):
            s, e = groups[j]
            if j > i and s - groups[j - 1][1] != 1:
                break
            digits += cand[s:e]
            if len(digits) > 19:
                break
            if pan_ok(digits, card_context):
                best = (j, digits)
        if best is None:
            i += 1
            continue
        j, digits = best
        out.append(Found(base + groups[i][0], base + groups[j][1], "pan", mask_pan(digits), digits))
        i = j + 1
    return out


# --- IBAN -----------------------------------------------------------------------------

IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
IBAN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}[A-Za-z0-9 ]{11,48}+")
# an upper-case IBAN whose account part has no run of 7 digits (AD12 0001 2030 AB00 ...)
IBAN_HINT_RE = re.compile(r"[A-Z]{2}[0-9]{2}[ +]?[A-Z0-9]{4}")


def iban_ok(iban: str) -> bool:
    """Upper-case, no spaces: country length table + ISO 7064 mod-97 == 1."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum() or not iban.isascii():
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def mask_iban(iban: str) -> str:
    """``DE89370400440532013000`` -> ``DE****************3000`` (country + last 4)."""
    return iban[:2] + "*" * (len(iban) - 6) + iban[-4:]


def find_ibans(text: str) -> list[Found]:
    out: list[Found] = []
    for n, m in enumerate(IBAN_RE.finditer(text)):
        check_limits(n, len(out))
        cand = m.group()
        want = IBAN_LENGTHS.get(cand[:2].upper())
        if want is None:
            continue
        chars: list[str] = []
        end = 0
        prev_space = False
        for k, c in enumerate(cand):
            if c == " ":
                if prev_space:
                    break
                prev_space = True
                continue
            prev_space = False
            chars.append(c)
            if len(chars) == want:
                end = k + 1
                break
        if len(chars) != want:
            continue
        after = m.start() + end
        if after < len(text) and text[after].isalnum():
            continue  # longer token: a hash or id, not an IBAN
        raw = "".join(chars)
        if not (raw.isupper() or raw.islower()):
            continue  # mixed-case tokens are base62 ids
        iban = raw.upper()
        if iban_ok(iban):
            out.append(Found(m.start(), after, "iban", mask_iban(iban), iban))
    return out


# --- US SSN ---------------------------------------------------------------------------

SSN_DASHED_RE = re.compile(r"(?<![\w-])([0-9]{3})-([0-9]{2})-([0-9]{4})(?![\w-])")
SSN_KEYED_RE = re.compile(r"(?<![0-9])([0-9]{3})([ -]?)([0-9]{2})\2([0-9]{4})(?![0-9])")
_SSN_SAMPLES = frozenset({"123456789", "078051120", "219099999"})


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """Never-issued ranges (000, 666, 9xx, group 00, serial 0000) and famous samples out."""
    digits = area + group + serial
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return digits.count(digits[0]) != 9 and digits not in _SSN_SAMPLES


def find_ssns(text: str, ssn_context: bool) -> list[Found]:
    """Dashed form anywhere; spaced or bare 9 digits only under an ssn/social key."""
    out: list[Found] = []
    if ssn_context:
        for n, m in enumerate(SSN_KEYED_RE.finditer(text)):
            check_limits(n, len(out))
            if ssn_ok(m.group(1), m.group(3), m.group(4)):
                norm = m.group(1) + m.group(3) + m.group(4)
                out.append(Found(m.start(), m.end(), "ssn", "[ssn]", norm))
        return out
    for n, m in enumerate(SSN_DASHED_RE.finditer(text)):
        check_limits(n, len(out))
        if ssn_ok(m.group(1), m.group(2), m.group(3)):
            norm = m.group(1) + m.group(2) + m.group(3)
            out.append(Found(m.start(), m.end(), "ssn", "[ssn]", norm))
    return out


# --- phone (E.164) --------------------------------------------------------------------

E164_RE = re.compile(r"(?<![\w+])\+([1-9][0-9]{6,14}+)(?![0-9])")
_PHONE_VALUE_RE = re.compile(r"\s?\+?[0-9][0-9 ()./-]{5,24}[0-9]\s?")
_CC2 = frozenset(
    {
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45",
        "46", "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61",
        "62", "63", "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94",
        "95", "98",
    }
)  # fmt: skip
_CC3_ZONES = frozenset(
    {
        "21", "22", "23", "24", "25", "26", "29", "35", "37", "38", "42", "50", "59", "67",
        "68", "69", "80", "85", "87", "88", "96", "97", "99",
    }
)  # fmt: skip


def e164_ok(digits: str) -> bool:
    """Country calling code is assigned and the length fits (NANP: exactly 11 digits)."""
    n = len(digits)
    if n < 7 or n > 15:
        return False
    if digits[0] == "1":
        return n == 11 and digits[1] not in "01" and digits[4] not in "01"
    if digits[0] == "7" or digits[:2] in _CC2:
        return n >= 8
    return digits[:2] in _CC3_ZONES


def mask_phone(digits: str, plus: bool) -> str:
    """Keep the last 2 digits: ``+4915112345678`` -> ``+***********78``."""
    return ("+" if plus else "") + "*" * (len(digits) - 2) + digits[-2:]


def find_phones(text: str, plus_text: str, phone_context: bool) -> list[Found]:
    """E.164 with ``+`` anywhere (tested on both the form-decoded and the '+'-kept text).

    Under a phone/tel/mobile/msisdn key the whole value counts when it is 7-15 digits
    with the usual separators, with or without ``+``.
    """
    out: list[Found] = []
    if phone_context:
        for v in (text, plus_text):
            if _PHONE_VALUE_RE.fullmatch(v) is None:
                continue
            digits = "".join(c for c in v if c.isdigit())
            intl = e164_ok(digits)
            # an explicit "+" must be valid E.164; a leading space may be a form-decoded "+"
            if 7 <= len(digits) <= 15 and (intl or v.lstrip()[:1] != "+"):
                plus = intl and (v.lstrip()[:1] == "+" or v[:1] == " ")
                return [Found(0, len(text), "phone", mask_phone(digits, plus), digits)]
    seen: set[int] = set()
    for variant in (text, plus_text) if plus_text != text else (text,):
        for n, m in enumerate(E164_RE.finditer(variant)):
            check_limits(n, len(out))
            digits = m.group(1)
            if m.start() not in seen and e164_ok(digits):
                seen.add(m.start())
                out.append(Found(m.start(), m.end(), "phone", mask_phone(digits, True), digits))
    return out


# --- EU national ids (only under an explicit key) -------------------------------------

_NIF_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_HETU_CHARS = "0123456789ABCDEFHJKLMNPRSTUVWXY"
_DNI_RE = re.compile(r"([XYZ]?)-?([0-9]{7,8})-?([A-Z])")
_PESEL_RE = re.compile(r"[0-9]{11}")
_SE_RE = re.compile(r"(?:[0-9]{2})?([0-9]{6})[-+]?([0-9]{4})")
_HETU_RE = re.compile(r"([0-9]{6})[-+A-FU-Y]([0-9]{3})([0-9A-Y])")
_PESEL_WEIGHTS = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)


def nif_ok(v: str) -> bool:
    """Spanish DNI (8 digits + letter) or NIE (X/Y/Z + 7 digits + letter)."""
    m = _DNI_RE.fullmatch(v)
    if m is None:
        return False
    prefix, num, letter = m.groups()
    if prefix:
        if len(num) != 7:
            return False
        num = str("XYZ".index(prefix)) + num
    elif len(num) != 8:
        return False
    return _NIF_LETTERS[int(num) % 23] == letter


def pesel_ok(v: str) -> bool:
    if _PESEL_RE.fullmatch(v) is None or v.count(v[0]) == 11:
        return False
    month, day = int(v[2:4]) % 20, int(v[4:6])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return False
    total = sum(w * int(c) for w, c in zip(_PESEL_WEIGHTS, v, strict=False))
    return (10 - total % 10) % 10 == int(v[10])


def personnummer_ok(v: str) -> bool:
    """Swedish personnummer / samordningsnummer: date sanity + Luhn on the last 10 digits."""
    m = _SE_RE.fullmatch(v)
    if m is None:
        return False
    ten = m.group(1) + m.group(2)
    month, day = int(ten[2:4]), int(ten[4:6])
    if not (1 <= month <= 12 and (1 <= day <= 31 or 61 <= day <= 91)):
        return False
    return ten.count(ten[0]) != 10 and luhn_ok(ten)


def hetu_ok(v: str) -> bool:
    """Finnish henkilötunnus: date sanity + control character of ddmmyynnn mod 31."""
    m = _HETU_RE.fullmatch(v)
    if m is None:
        return False
    date, num, check = m.groups()
    if not (1 <= int(date[:2]) <= 31 and 1 <= int(date[2:4]) <= 12):
        return False
    return _HETU_CHARS[int(date + num) % 31] == check


def find_national_id(text: str) -> list[Found]:
    """Whole-value check; called only when the parameter name says national id."""
    v = text.strip().upper()
    if 9 <= len(v) <= 13 and (nif_ok(v) or pesel_ok(v) or personnummer_ok(v) or hetu_ok(v)):
        lead = len(text) - len(text.lstrip())
        norm = "".join(c for c in v if c.isalnum())
        return [Found(lead, lead + len(text.strip()), "national-id", "[national-id]", norm)]
    return []


# --- parameter-name context -----------------------------------------------------------

_PHONE_KEYS = frozenset(
    {"tel", "telephone", "cell", "cellphone", "fax", "msisdn", "sms", "whatsapp", "mobile"}
)
_NID_KEYS = frozenset(
    {
        "dni", "nif", "nie", "nifnie", "pesel", "personnummer", "personnr", "personalnumber",
        "pnr", "hetu", "henkilotunnus", "nationalid", "nationalidnumber", "nationalidentifier",
        "nationalidentitynumber", "nationalnumber", "identitynumber", "idnumber", "idcard",
    }
)  # fmt: skip
_CARD_KEYS = frozenset({"cc", "ccn", "ccnum", "ccnumber", "pan", "cardno", "cardnumber"})


def key_context(key: str) -> str | None:
    """What a canonical parameter name promises: "card", "ssn", "phone", "national-id"."""
    if not key:
        return None
    if "card" in key or key in _CARD_KEYS:
        return "card"
    if "ssn" in key or "social" in key:
        return "ssn"
    if key in _PHONE_KEYS or "phone" in key or "mobile" in key or "msisdn" in key:
        return "phone"
    if key in _NID_KEYS:
        return "national-id"
    return None
