"""Secrets in URLs: known key formats, JWTs, ``user:pass@`` and credential parameter names.

Key formats come with a fixed prefix, so a regex plus a little entropy is enough. Generic
credentials are recognized by the *parameter name* (``password=``, ``access_token=``),
with the info-only names (``csrf_token``, OAuth ``state``/``code``, ``key_id``) left alone.
Patterns follow the same linear-time rules as ``auditor.pii``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter

from auditor.pii import Found, check_limits

# --- known key formats ----------------------------------------------------------------

JWT_RE = re.compile(
    r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{10,8000}+\.eyJ[A-Za-z0-9_-]{5,16000}+"
    r"\.[A-Za-z0-9_-]{0,8000}+"
)
AWS_RE = re.compile(
    r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])"
)
GOOGLE_RE = re.compile(r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])")
GITHUB_RE = re.compile(
    r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,251}+|github_pat_[A-Za-z0-9_]{82,251}+)"
    r"(?![A-Za-z0-9_])"
)
STRIPE_RE = re.compile(
    r"(?<![A-Za-z0-9_])[sr]k_(live|test|prod)_[A-Za-z0-9]{10,247}+(?![A-Za-z0-9])"
)
SLACK_RE = re.compile(
    r"(?<![A-Za-z0-9])(?:xox[abposre]-[0-9A-Za-z-]{10,200}+"
    r"|xapp-[0-9]-[A-Z0-9]{1,40}+-[0-9]{1,20}+-[a-z0-9]{1,100}+)"
)
SLACK_HOOK_RE = re.compile(
    r"hooks\.slack\.com/(?:services|workflows|triggers)/([A-Za-z0-9+/]{43,56}+)"
)
BASIC_AUTH_RE = re.compile(
    r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{1,15}+://([^\s/?#@:]{1,64}+):([^\s/?#@]{1,128}+)@"
    r"([^\s/?#:@]{0,253}+)"
)
_AWS_EXAMPLE = "AKIAIOSFODNN7EXAMPLE"


def entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(s)
    if n == 0:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def jwt_header(token: str) -> dict[str, object] | None:
    """The decoded JOSE header of a compact JWT, or None when it is not one."""
    head = token.split(".", 1)[0]
    try:
        raw = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
        obj = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) and isinstance(obj.get("alg"), str) else None


def find_jwts(text: str) -> list[Found]:
    out: list[Found] = []
    for n, m in enumerate(JWT_RE.finditer(text)):
        check_limits(n, len(out))
        token = m.group()
        header = jwt_header(token)
        if header is None:
            continue  # an eyJ state blob, not a token
        alg = str(header["alg"]).strip().lower()
        detail = "alg:none" if alg in ("none", "") or token.endswith(".") else None
        out.append(Found(m.start(), m.end(), "jwt", "[jwt]", token, detail))
    return out


def find_keys(text: str, presigned: bool = False) -> list[Found]:
    """AWS, Google, GitHub, Stripe and Slack key formats."""
    out: list[Found] = []
    for n, m in enumerate(AWS_RE.finditer(text)):
        check_limits(n, len(out))
        key = m.group()
        if key == _AWS_EXAMPLE or key.endswith("EXAMPLE") or entropy(key) < 3.0:
            continue
        detail = "presigned-url" if presigned else ("temporary" if key[:4] == "ASIA" else None)
        out.append(Found(m.start(), m.end(), "aws-access-key", "[aws-access-key]", key, detail))
    for n, m in enumerate(GOOGLE_RE.finditer(text)):
        check_limits(n, len(out))
        if entropy(m.group()) >= 4.0:
            out.append(Found(m.start(), m.end(), "google-api-key", "[google-api-key]", m.group()))
    for n, m in enumerate(GITHUB_RE.finditer(text)):
        check_limits(n, len(out))
        if entropy(m.group()) >= 3.0:
            out.append(Found(m.start(), m.end(), "github-token", "[github-token]", m.group()))
    for n, m in enumerate(STRIPE_RE.finditer(text)):
        check_limits(n, len(out))
        detail = "test-key" if m.group(1) == "test" else None
        out.append(Found(m.start(), m.end(), "stripe-key", "[stripe-key]", m.group(), detail))
    for n, m in enumerate(SLACK_RE.finditer(text)):
        check_limits(n, len(out))
        out.append(Found(m.start(), m.end(), "slack-token", "[slack-token]", m.group()))
    for n, m in enumerate(SLACK_HOOK_RE.finditer(text)):
        check_limits(n, len(out))
        out.append(Found(m.start(1), m.end(1), "slack-token", "[slack-token]", m.group(1)))
    return out


def _placeholder_cred(s: str) -> bool:
    return s[:1] in ("$", "{", "<", "%") or s.strip("*x•") == ""


def find_basic_auth(text: str) -> list[Found]:
    """``scheme://user:pass@host`` inside a value (redirect targets, proxy absolute-form)."""
    out: list[Found] = []
    for n, m in enumerate(BASIC_AUTH_RE.finditer(text)):
        check_limits(n, len(out))
        user, password, host = m.group(1), m.group(2), m.group(3)
        if _placeholder_cred(user) or _placeholder_cred(password) or host == "httpbin.org":
            continue
        masked = f"{text[m.start() : m.start(1)]}***:***@{host}"
        norm = f"{user}:{password}"
        out.append(Found(m.start(1), m.end(2), "basic-auth", masked, norm, None, "***:***"))
    return out


# --- credential parameter names -------------------------------------------------------

_SEPARATORS = str.maketrans("", "", "-_. ")
INFO_KEYS = frozenset(
    {
        "csrf", "csrftoken", "xsrftoken", "xcsrftoken", "csrfmiddlewaretoken",
        "authenticitytoken", "state", "code", "keyid", "publictoken", "publishablekey",
        "pagetoken", "nextpagetoken", "prevpagetoken", "continuationtoken", "nexttoken",
        "synctoken", "cursor", "idempotencykey", "cachekey", "sortkey", "tokentype",
        "tokentypehint", "granttype", "responsetype", "sessionstate", "recaptchatoken",
        "captchatoken", "turnstiletoken", "hcaptchatoken", "key", "formkey",
    }
)  # fmt: skip
_PASSWORD_KEYS = frozenset({"pass", "pwd", "passwd", "password", "passphrase", "passcode"})
_SESSION_KEYS = frozenset(
    {
        "session", "sessionid", "sessid", "sid", "phpsessid", "jsessionid", "sessiontoken",
        "sessionkey", "cfid", "cftoken",
    }
)  # fmt: skip
_APIKEY_KEYS = frozenset(
    {
        "secret", "apikey", "xapikey", "apisecret", "appsecret", "bearer", "authorization",
        "jwt", "privatekey", "secretkey", "signingkey", "awssecretaccesskey", "accesskeysecret",
        "clientsecret", "consumersecret", "token",
    }
)  # fmt: skip
# Sensitive authentication data (PCI DSS 3.3.1): never kept after authorisation.
_SAD_KEYS = frozenset(
    {
        "cvv", "cvv2", "cvc", "cvc2", "cid", "cvn", "csc", "cav2", "securitycode",
        "cardcode", "cardcvv", "cardcvc", "cardsecuritycode", "pin", "cardpin",
    }
)  # fmt: skip
_PRESIGNED_KEYS = frozenset({"xamzcredential", "awsaccesskeyid"})
_PLACEHOLDERS = frozenset(
    {"null", "none", "nil", "undefined", "true", "false", "redacted", "hidden", "masked"}
)
_MASK_TOKEN_RE = re.compile(r"\[[a-z-]{2,20}\]")


def canonical_key(name: str) -> str:
    """``user[Password]`` -> ``password``; ``X-Api-Key`` -> ``xapikey``."""
    n = name.strip().lower()
    if n.endswith("]") and "[" in n:
        inner = n[n.rfind("[") + 1 : -1]
        n = inner or n[: n.rfind("[")]
    return n.translate(_SEPARATORS)


def credential_kind(key: str) -> str | None:
    """``password`` / ``api-key`` / ``session-id`` / ``card-verification`` for a key name."""
    if not key or key in INFO_KEYS:
        return None
    if key in _SESSION_KEYS or key.startswith("aspsessionid"):
        return "session-id"
    if key in _SAD_KEYS:
        return "card-verification"
    if key in _PASSWORD_KEYS or key.endswith(("password", "passwd", "passphrase")):
        return "password"
    if key in _APIKEY_KEYS or key.endswith(("token", "secret", "apikey", "privatekey")):
        return "api-key"
    return None


def presigned_key(key: str) -> bool:
    return key in _PRESIGNED_KEYS


def is_placeholder(value: str) -> bool:
    """Values that are not a secret: empty, ``***``, ``null``, ``${VAR}``, our own masks."""
    v = value.strip()
    if not v or v.lower() in _PLACEHOLDERS or v.strip("*•.") == "":
        return True
    if len(v) >= 3 and v.strip("xX") == "":  # "xxxx" as in a documentation sample
        return True
    if v[:2] in ("${", "{{", "%s") or (v[0] in "{<" and v[-1] in "}>"):
        return True
    return _MASK_TOKEN_RE.fullmatch(v) is not None


def credential_value_ok(kind: str, value: str) -> bool:
    """Length gates: any password, api keys >= 8 chars, session ids >= 16 chars."""
    if is_placeholder(value):
        return False
    n = len(value.strip())
    if kind == "password":
        return True
    if kind == "card-verification":  # CVV/CVC are 3-4 digits, PINs 4-6
        return value.strip().isdigit() and 3 <= n <= 6
    if kind == "session-id":
        return n >= 16
    return n >= 8


_TOKENISH_RE = re.compile(r"[A-Za-z0-9_-]{16,256}")


def bare_key_is_secret(value: str) -> bool:
    """``?key=`` is an API key only when the value looks random (gitleaks-style entropy)."""
    return _TOKENISH_RE.fullmatch(value) is not None and entropy(value) >= 3.5
