"""Redaction at ingest: what is stored is masked, and what was masked is reported.

``Redactor`` is the only place where a raw card number, e-mail, token or password from a
log line exists; everything after it (events, findings, reports) sees the masked text and
a keyed digest. Masking works in place on the logged (percent-encoded) text, so route
templating and injection rules still see the original structure.

Masked forms (one per type, stable, never re-detected as PII):

=============== ==========================================================
email           ``j***@example.org`` (first character + domain)
pan             ``411111******1111`` (16-19 digits), ``***********0005`` (13-15)
iban            ``DE****************3000`` (country + last 4)
phone           ``+***********78`` (last 2 digits; ``%2B***`` inside a query value)
ssn             ``[ssn]``
national-id     ``[national-id]``
basic-auth      ``https://***:***@host`` (the text keeps ``***:***@``)
password, ...   ``[password]``, ``[api-key]``, ``[session-id]``, ``[jwt]``,
                ``[aws-access-key]``, ``[google-api-key]``, ``[github-token]``,
                ``[stripe-key]``, ``[slack-token]``
too many finds  ``[redacted]`` (the whole value; hostile input fails closed)
user names      ``j***@example.org#1f2e3d4c`` (mask + 8 hex of the keyed digest)
=============== ==========================================================

Cost: a clean target costs a few compiled-regex scans and, for repeated strings, a set
lookup (``_Memo``); the detectors run only on values a precheck flags.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from itertools import compress, repeat
from operator import le, ne

from auditor.model import Exposure
from auditor.percent import decode, decode_offsets
from auditor.pii import IBAN_HINT_RE, Found, TooManyCandidates, key_context
from auditor.pii_scan import scan_text, scan_value
from auditor.secrets import canonical_key, credential_kind, find_basic_auth

# --- prechecks: cheap "may hold something" tests on the raw, logged text ---------------

# digit shapes worth a look, from the start of a digit run: 7+ digits; 3+ digits, a
# separator, 4 digits (cards, IBAN groups, personnummer); SSN 3-2-4; HETU 6-x-3. A
# lookbehind start (no first-character set) scans position by position, which costs less
# than one match attempt per digit in id-heavy paths.
_DIGITS_RE = re.compile(
    r"(?<![0-9])[0-9]{3}(?:[0-9]{4}|[0-9]{0,16}+(?:[-+ ]|%2[0Bb])[0-9]{4}"
    r"|(?:[-+ ]|%20)[0-9]{2}(?:[-+ ]|%20)[0-9]{4}|[0-9]{3}[-+A-Za-z][0-9]{3})"
)
# digits -> "0", separators (space, "-", "+") -> "-", the rest -> "."; counting "0"s in
# the translated bytes is the cheapest digit count CPython offers (measured with
# callgrind: about half the instructions of an anchored regex). In free text a card shows
# up as 13 digits in a row or as groups "0000-0000" (build numbers like 6099.109 do not).
_DIGIT_SHAPE = bytes(
    ord("0") if 48 <= i <= 57 else ord("-") if i in (32, 43, 45) else ord(".") for i in range(256)
)

_DIGIT_SHAPE_LINES = _DIGIT_SHAPE[:10] + b"\n" + _DIGIT_SHAPE[11:]  # newlines kept


def _shape(s: str) -> bytes:
    try:
        return s.encode().translate(_DIGIT_SHAPE)
    except UnicodeEncodeError:  # lone surrogates
        return s.encode("utf-8", "surrogatepass").translate(_DIGIT_SHAPE)


# key-format prefixes: eyJ (JWT), AKIA.., AIza, ghp_.., github_pat_, sk_live_.., xoxb-..
_KEYS_RE = re.compile(
    r"[JA_\-](?:(?<=J)(?<=eyJ)|(?<=A)(?:KIA|SIA|BIA|CCA|3T|Iza)"
    r"|(?<=_)(?:(?<=gh[pousr]_)|(?<=github_pat_)|(?<=[sr]k_)(?:live|test|prod)_)"
    r"|(?<=-)(?:(?<=xox[abposre]-)|(?<=xapp-)))"
)
# credential-looking parameter names, on the lower-cased query: password=, token=, sid= ...
# (and any name ending in an escape, in case someone writes passwor%64=)
_NAMES = re.compile(
    r"=(?:(?<=(?:ass|ord|swd|pwd|ase|ret|ken|key|rer|ion|sid|nid|jwt|ode|fid"
    r"|cvv|cvc|vv2|vc2|cid|cvn|csc|pin|av2)=)|(?<=\]=)"
    r"|(?<=%[0-9a-f][0-9a-f]=))"
)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}+://")

_MAX_EXPOSURES = 64
_CACHE_MAX = 8192
_CACHE_MAX_LEN = 512


def needs_scan(raw: str) -> bool:
    """False when ``raw`` (a path, a query, a value) cannot hold anything we detect.

    Plain ``in`` tests first (they cost next to nothing), a digit count, the digit-shape
    regex only with 7 digits or more, and the key-format regex only when there is an
    upper-case letter: every supported key format has one (``eyJ``, ``AKIA``, base62).
    """
    if "@" in raw or ";" in raw:  # e-mail / userinfo, ;jsessionid=
        return True
    if "%" in raw and ("%40" in raw or "%25" in raw or "%2B" in raw or "%2b" in raw or "%3" in raw):
        return True  # %40 '@', %25 double encoding, %2B '+', %3x digits and ':'
    if ":" in raw and "://" in raw:  # a URL inside a value
        return True
    try:
        digits = raw.encode().translate(_DIGIT_SHAPE).count(b"0")
    except UnicodeEncodeError:
        digits = _shape(raw).count(b"0")
    if digits >= 7 and _DIGITS_RE.search(raw) is not None:
        return True
    # str.lower() != s: str.islower() looks every character up in the Unicode table
    return raw.lower() != raw and (
        _KEYS_RE.search(raw) is not None or IBAN_HINT_RE.search(raw) is not None
    )


def text_needs_scan(text: str) -> bool:
    """``needs_scan`` for free text: e-mails, cards and key formats only."""
    if "@" in text:
        return True
    shape = _shape(text)
    if shape.count(b"0") >= 13 and (
        shape.find(b"0000-0000") >= 0 or shape.find(b"0000000000000") >= 0
    ):
        return True
    return text.lower() != text and _KEYS_RE.search(text) is not None


def query_needs_scan(query: str) -> bool:
    return needs_scan(query) or _NAMES.search(query.lower()) is not None


class _Memo:
    """Recently seen strings that needed no redaction (paths, queries, user agents repeat).

    Two generations: when ``new`` is full it becomes ``old`` and a fresh ``new`` starts,
    so hot strings survive a turnover. Plain sets, looked up inline: a set lookup is the
    whole cost of a repeated clean value.
    """

    __slots__ = ("new", "old")

    def __init__(self) -> None:
        self.new: set[str] = set()
        self.old: set[str] = set()


def _remember(memo: _Memo, s: str) -> None:
    if len(s) <= _CACHE_MAX_LEN:
        new = memo.new
        if len(new) >= _CACHE_MAX:
            memo.old = new
            memo.new = new = set()
        new.add(s)


def _apply(raw: str, found: list[Found], offs: list[int] | None, form: bool = False) -> str:
    """Write each mask over its span of ``raw`` (``offs`` maps decoded -> raw positions).

    In a form-encoded value a literal ``+`` would read as a space, so masks carry ``%2B``.
    """
    pieces: list[str] = []
    pos = 0
    for f in found:
        start = offs[f.start] if offs is not None else f.start
        end = offs[f.end] if offs is not None else f.end
        pieces.append(raw[pos:start])
        mask = f.masked if f.repl is None else f.repl
        pieces.append(mask.replace("+", "%2B") if form else mask)
        pos = end
    pieces.append(raw[pos:])
    return "".join(pieces)


# --- the redactor ---------------------------------------------------------------------


class Redactor:
    """Masks sensitive values in logged request data; ``key`` keys the digests.

    Pure apart from a memo of strings known to be clean, so it can be shared by every
    decoder of a process. The key must come from ``auditor.keys.load_or_create_key``.
    """

    __slots__ = (
        "_clean_paths",
        "_clean_queries",
        "_clean_texts",
        "_clean_urls",
        "_clean_users",
        "_key",
    )

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("redaction key must be at least 16 bytes")
        self._key = bytes(key)
        self._clean_paths = _Memo()
        self._clean_queries = _Memo()
        self._clean_texts = _Memo()
        self._clean_urls = _Memo()
        self._clean_users = _Memo()

    @property
    def key(self) -> bytes:
        """The key, for a decode worker process that must mask with the same digests."""
        return self._key

    def digest(self, value: str) -> str:
        """HMAC-SHA256 of ``value`` with the key, hex, first 16 characters."""
        raw = value.encode("utf-8", "surrogatepass")
        return hmac.digest(self._key, raw, "sha256").hex()[:16]

    # request target ---------------------------------------------------------------

    def redact_target(
        self, path: str, query: str | None
    ) -> tuple[str, str | None, tuple[Exposure, ...]]:
        """Mask ``path`` segments and ``query`` values; the inputs come back when clean."""
        paths = self._clean_paths
        if path in paths.new or path in paths.old:
            path_dirty = False
        elif needs_scan(path):
            path_dirty = True
        else:
            path_dirty = False
            _remember(paths, path)
        query_dirty = False
        if query is not None:
            queries = self._clean_queries
            if query not in queries.new and query not in queries.old:
                if query_needs_scan(query):
                    query_dirty = True
                else:
                    _remember(queries, query)
        if not path_dirty and not query_dirty:
            return path, query, ()
        out: list[Exposure] = []
        new_path = path
        if path_dirty:
            new_path = self._path(path, "path", out)
            if new_path is path:
                _remember(paths, path)
        new_query = query
        if query_dirty and query is not None:
            new_query = self._query(query, "query", out)
            if new_query is query:
                _remember(self._clean_queries, query)
        return new_path, new_query, tuple(out)

    def dirty_targets(self, paths: Sequence[str], queries: Sequence[str | None]) -> list[int]:
        """The indexes of the targets (``paths[i]``, ``queries[i]``) that ``redact_target``
        may change; every other one it gives back as it is, with no exposure. For the
        targets of a decoded chunk, looked at together: ``needs_scan``'s tests, each over
        all the paths at once (in C), and ``needs_scan`` itself only for a path one of them
        points at; half the paths of a day of API traffic are new (ids), and one by one
        they cost the memo lookups, the tests and a call each."""
        n = len(paths)
        joined = "\n".join(paths)
        if joined.count("\n") != n - 1 or not joined.isascii():
            # a newline in a path, or text whose lower case may change its length
            suspects: set[int] | range = range(n)
        else:
            suspects = set()
            if "@" in joined or ";" in joined or "%" in joined or ":" in joined:
                suspects.update(
                    i for i, p in enumerate(paths) if "@" in p or ";" in p or "%" in p or ":" in p
                )
            shapes = joined.encode().translate(_DIGIT_SHAPE_LINES).split(b"\n")
            suspects.update(
                compress(range(n), map(le, repeat(7), map(bytes.count, shapes, repeat(b"0"))))
            )
            lowered = joined.lower()
            if lowered != joined:
                suspects.update(compress(range(n), map(ne, paths, lowered.split("\n"))))
        dirty = [i for i in suspects if needs_scan(paths[i])]
        queries_memo = self._clean_queries
        if any(q is not None for q in queries):
            new, old = queries_memo.new, queries_memo.old
            for i, q in enumerate(queries):
                if q is not None and q not in new and q not in old:
                    if query_needs_scan(q):
                        dirty.append(i)
                    else:
                        _remember(queries_memo, q)
        return sorted(set(dirty))

    def redact_url(self, url: str, location: str) -> tuple[str, tuple[Exposure, ...]]:
        """Mask a full URL (the Referer): userinfo, path, query and fragment."""
        urls = self._clean_urls
        if len(url) < 2 or url in urls.new or url in urls.old:
            return url, ()
        m = _SCHEME_RE.match(url)
        body = url[m.end() :] if m is not None else url  # the scheme's "://" is no hint
        if not needs_scan(body):
            if "?" not in body and "#" not in body:
                _remember(urls, url)
                return url, ()
            q, h = body.find("?"), body.find("#")
            cut = h if q < 0 else q if h < 0 else min(q, h)
            if _NAMES.search(body[cut:].lower()) is None:
                _remember(urls, url)
                return url, ()
        out: list[Exposure] = []
        rest = url
        head = ""
        if m is not None:
            end = m.end()
            while end < len(url) and url[end] not in "/?#":
                end += 1
            head = self._authority(url[: m.end()], url[m.end() : end], location, out)
            rest = url[end:]
        rest, _, fragment = rest.partition("#")
        path, qmark, query = rest.partition("?")
        new = head + self._path(path, location, out)
        if qmark:
            new += "?" + self._query(query, location, out)
        if "#" in url:
            if "=" in fragment:
                fragment = self._query(fragment, location, out)
            else:
                fragment = self._value(fragment, None, False, location, out)
            new += "#" + fragment
        if new == url:
            _remember(urls, url)
            return url, ()
        return new, tuple(out)

    # free text and user names -----------------------------------------------------

    def redact_text(self, text: str) -> str:
        """Mask e-mails, card numbers, JWTs and key formats in free text (user agent).

        No exposures: an address in a User-Agent is a crawler's contact, not a leak from
        the request, but it is still never stored in clear.
        """
        texts = self._clean_texts
        if text in texts.new or text in texts.old:
            return text
        if not text_needs_scan(text):
            _remember(texts, text)
            return text
        try:
            found = scan_text(text)
        except TooManyCandidates:
            return "[redacted]"
        if not found:
            _remember(texts, text)
            return text
        return _apply(text, found, None)

    def redact_user(self, name: str) -> str:
        """Mask e-mail-like or secret-like user names, keeping them distinct for grouping.

        ``john@example.org`` -> ``j***@example.org#1f2e3d4c`` (keyed hash of the raw name).
        Plain names come back unchanged.
        """
        users = self._clean_users
        if name in users.new or name in users.old:
            return name
        if len(name) < 32 and not text_needs_scan(name):  # >= 32: maybe a random API key
            _remember(users, name)
            return name
        try:
            found = scan_text(name, user=True)
        except TooManyCandidates:
            found = [Found(0, len(name), "api-key", "[redacted]", name)]
        if not found:
            _remember(users, name)
            return name
        return f"{_apply(name, found, None)}#{self.digest(name.lower())[:8]}"

    # pieces -----------------------------------------------------------------------

    def _exposures(
        self,
        found: list[Found],
        location: str,
        param: str | None,
        out: list[Exposure],
    ) -> None:
        for f in found:
            if len(out) >= _MAX_EXPOSURES:
                return
            out.append(
                Exposure(f.pii_type, location, param, f.masked, self.digest(f.norm), f.detail)
            )

    def _value(
        self,
        raw: str,
        name: str | None,
        form: bool,
        location: str,
        out: list[Exposure],
        param: str | None = None,
    ) -> str:
        """Scan one raw value (a query value, a path segment); return it masked."""
        plus, formed = decode(raw, form)
        key = canonical_key(name) if name else ""
        try:
            found = scan_value(formed, plus, key)
        except TooManyCandidates:
            return "[redacted]"
        if not found:
            return raw
        self._exposures(found, location, param, out)
        return _apply(raw, found, decode_offsets(raw), form)

    def _param(self, part: str, form: bool, location: str, out: list[Exposure]) -> str:
        """One ``name=value`` (or bare ``value``) of a query, fragment or matrix segment."""
        name_raw, eq, value_raw = part.partition("=")
        if not eq:
            return self._value(part, None, form, location, out) if needs_scan(part) else part
        name, new_name_raw = self._name(name_raw, form, location, out)
        new_value = value_raw
        if value_raw and (needs_scan(value_raw) or _keyed(name)):
            new_value = self._value(value_raw, name, form, location, out, param=name)
        if new_value is value_raw and new_name_raw is name_raw:
            return part
        return f"{new_name_raw}={new_value}"

    def _name(
        self, name_raw: str, form: bool, location: str, out: list[Exposure]
    ) -> tuple[str, str]:
        """(decoded name, logged name), both masked when the name itself holds PII."""
        if not needs_scan(name_raw):
            if "%" not in name_raw and not (form and "+" in name_raw):
                return name_raw, name_raw
            return decode(name_raw, form)[1], name_raw
        plus, formed = decode(name_raw, form)
        try:
            found = scan_value(formed, plus, "")
        except TooManyCandidates:
            return "[redacted]", "[redacted]"
        if not found:
            return formed, name_raw
        self._exposures(found, location, None, out)
        masked_raw = _apply(name_raw, found, decode_offsets(name_raw), form)
        return _apply(formed, found, None), masked_raw

    def _query(self, query: str, location: str, out: list[Exposure]) -> str:
        parts = query.split("&")
        changed = False
        for i, part in enumerate(parts):
            if part:
                new = self._param(part, True, location, out)
                if new is not part:
                    parts[i] = new
                    changed = True
        return "&".join(parts) if changed else query

    def _path(self, path: str, location: str, out: list[Exposure]) -> str:
        head = ""
        rest = path
        m = _SCHEME_RE.match(path)
        if m is not None:  # absolute-form request target: GET http://user:pw@host/ HTTP/1.1
            end = m.end()
            while end < len(path) and path[end] != "/":
                end += 1
            head = self._authority(path[: m.end()], path[m.end() : end], location, out)
            rest = path[end:]
        segs = rest.split("/")
        changed = False
        for i, seg in enumerate(segs):
            if seg and needs_scan(seg):
                new = self._segment(seg, location, out)
                if new is not seg:
                    segs[i] = new
                    changed = True
        if not changed and not head:
            return path
        new_path = head + ("/".join(segs) if changed else rest)
        return path if new_path == path else new_path

    def _segment(self, seg: str, location: str, out: list[Exposure]) -> str:
        if ";" not in seg:
            return self._value(seg, None, False, location, out)
        first, *params = seg.split(";")
        pieces = [self._value(first, None, False, location, out) if first else first]
        pieces.extend(self._param(p, False, location, out) if p else p for p in params)
        return ";".join(pieces)

    def _authority(self, scheme: str, authority: str, location: str, out: list[Exposure]) -> str:
        """``scheme://userinfo@host``: a password here is a basic-auth leak."""
        at = authority.rfind("@")
        if at < 0:
            return scheme + authority
        userinfo, host = authority[:at], authority[at + 1 :]
        user_raw, colon, pw_raw = userinfo.partition(":")
        if colon:
            found = find_basic_auth(f"{scheme}{userinfo}@{host}")
            if found:
                user = decode(user_raw, False)[0]
                pw = decode(pw_raw, False)[0]
                norm = f"{user}:{pw}"
                f = found[0]._replace(norm=norm)
                self._exposures([f], location, None, out)
                return f"{scheme}***:***@{host}"
        return scheme + self._value(userinfo, None, False, location, out) + "@" + host


def _keyed(name: str) -> bool:
    """The parameter name alone makes the value worth scanning (password=, ssn=, key=)."""
    key = canonical_key(name)
    return key == "key" or credential_kind(key) is not None or key_context(key) is not None
