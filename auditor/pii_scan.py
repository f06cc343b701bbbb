"""Which detectors run on a value, in which order, and how overlaps are settled.

``scan_value`` handles one decoded URL value with its parameter name as context;
``scan_text`` handles free text (user agents, user names). Both return non-overlapping
``Found`` spans sorted by position. Earlier detectors win an overlap: a JWT is not also
reported as an e-mail, an IBAN is not also a card number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from auditor.pii import (
    IBAN_HINT_RE,
    MAX_FOUND,
    Found,
    TooManyCandidates,
    find_emails,
    find_ibans,
    find_national_id,
    find_pans,
    find_phones,
    find_ssns,
    key_context,
)
from auditor.secrets import (
    bare_key_is_secret,
    canonical_key,
    credential_kind,
    credential_value_ok,
    entropy,
    find_basic_auth,
    find_jwts,
    find_keys,
    presigned_key,
)

_KEY_HINT = re.compile(
    r"A(?:KIA|SIA|BIA|CCA|3T|Iza)|gh[pousr]_|github_pat_|[sr]k_(?:live|test|prod)_"
    r"|xox[abposre]-|xapp-|hooks\.slack\.com/"
)
_ENOUGH_DIGITS = re.compile(r"(?:[^0-9]*+[0-9]){7}")
# name=value pairs inside a decoded value (a redirect URL carrying ?access_token=...)
_INNER_PAIR = re.compile(r"(?<=[?&#;])([A-Za-z0-9_.\[\]-]{1,64}+)=([^&#;]{1,4096}+)")
_RANDOM_USER = re.compile(r"[A-Za-z0-9_+/=-]{32,256}")


def _add(found: list[Found], cands: Iterable[Found]) -> None:
    for c in cands:
        if not any(c.start < f.end and f.start < c.end for f in found):
            found.append(c)
    if len(found) > 4 * MAX_FOUND:
        raise TooManyCandidates


def _secrets(found: list[Found], text: str, key: str = "") -> None:
    if "eyJ" in text:
        _add(found, find_jwts(text))
    if _KEY_HINT.search(text) is not None:
        _add(found, find_keys(text, presigned_key(key)))
    if "@" in text and "://" in text:
        _add(found, find_basic_auth(text))


def _credential(form: str, plus: str, kind: str, key: str) -> Found:
    """The whole value of ``password=`` / ``access_token=`` / ``sid=`` is the secret."""
    specific: list[Found] = []
    _secrets(specific, plus, key)
    if specific:
        f = specific[0]
        return Found(0, len(form), f.pii_type, f.masked, f.norm, f.detail)
    return Found(0, len(form), kind, f"[{kind}]", plus)


def _inner_pairs(found: list[Found], form: str, plus: str) -> None:
    """Credentials by name inside a nested URL or query held in one value."""
    for n, m in enumerate(_INNER_PAIR.finditer(plus)):
        if n >= MAX_FOUND:
            raise TooManyCandidates
        key = canonical_key(m.group(1))
        kind = credential_kind(key)
        value = form[m.start(2) : m.end(2)]
        if kind is not None and credential_value_ok(kind, value):
            f = _credential(value, m.group(2), kind, key)
            _add(found, [f._replace(start=m.start(2), end=m.end(2))])


def scan_value(form: str, plus: str, key: str = "") -> list[Found]:
    """Everything sensitive in one decoded value.

    ``form`` is form-decoded (``+`` = space), ``plus`` the same text with ``+`` kept
    (same length, same positions); ``key`` the canonical parameter name or "".
    """
    kind = credential_kind(key) if key else None
    if kind is not None and credential_value_ok(kind, form):
        return [_credential(form, plus, kind, key)]
    ctx = key_context(key)
    found: list[Found] = []
    if "=" in plus:
        _inner_pairs(found, form, plus)
    _secrets(found, plus, key)
    if "@" in plus:
        _add(found, find_emails(plus))
    enough_digits = _ENOUGH_DIGITS.match(form) is not None
    if enough_digits and ctx == "national-id":
        _add(found, find_national_id(form))
    elif enough_digits and ctx == "phone":
        _add(found, find_phones(form, plus, True))
    if (enough_digits and not form.isdigit()) or IBAN_HINT_RE.search(form) is not None:
        _add(found, find_ibans(form))
    if enough_digits:
        _add(found, find_pans(form, ctx == "card"))
        if ctx == "ssn" or "-" in form:
            _add(found, find_ssns(form, ctx == "ssn"))
        if ctx != "phone" and "+" in plus:
            _add(found, find_phones(form, plus, False))
    if not found and key == "key" and bare_key_is_secret(form.strip()):
        found.append(Found(0, len(form), "api-key", "[api-key]", plus))
    found.sort()
    return found


def scan_text(text: str, user: bool = False) -> list[Found]:
    """E-mails, cards, JWTs, key formats and ``user:pass@`` URLs in free text.

    With ``user`` (an authenticated user name) a long random-looking name is masked as
    a secret too: some APIs log the API key as the basic-auth user.
    """
    found: list[Found] = []
    _secrets(found, text)
    if "@" in text:
        _add(found, find_emails(text))
    if _ENOUGH_DIGITS.match(text) is not None:
        _add(found, find_pans(text))
    if user and not found and _RANDOM_USER.fullmatch(text) is not None and entropy(text) >= 4.3:
        found.append(Found(0, len(text), "api-key", "[api-key]", text))
    found.sort()
    return found
