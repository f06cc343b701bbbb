"""Operators' own formats: an nginx ``log_format`` or an Apache ``LogFormat`` string,
compiled once into a single regex whose groups feed the canonical raw keys.

Every variable is captured (so the regex stays faithful to the format); variables we have
no use for are ignored. When several variables could fill one key (``$host`` and
``$http_host``), the more specific one wins, whatever their order in the format.
"""

from __future__ import annotations

import re

from auditor.errors import ConfigError
from auditor.formats.event import DictParser
from auditor.formats.jsonfmt import JsonParser, schema

_TIME_CLF = r"\d{1,2}/[A-Za-z]{3}/\d{4}:\d\d:\d\d:\d\d(?: [+-]\d{4})?"
_TIME_ISO = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
_NUM = r"-?\d+|-"
_DEC = r"\d+(?:\.\d+)?|-"
_QUOTED = r'[^"\\]*(?:\\.[^"\\]*)*'

# variable → (raw key, rank: lower wins, value pattern or None for the context default)
_NGINX: dict[str, tuple[str | None, int, str | None]] = {
    "remote_addr": ("client_ip", 0, None),
    "realip_remote_addr": ("client_ip", 1, None),
    "binary_remote_addr": (None, 9, None),
    "remote_port": ("client_port", 0, _NUM),
    "remote_user": ("user", 0, None),
    "time_local": ("time", 0, _TIME_CLF),
    "time_iso8601": ("time", 1, _TIME_ISO),
    "msec": ("time", 2, r"\d+(?:\.\d+)?"),
    "request": ("request", 0, None),
    "request_method": ("method", 0, None),
    "request_uri": ("target", 0, None),
    "uri": ("path", 0, None),
    "document_uri": ("path", 1, None),
    "args": ("query", 0, None),
    "query_string": ("query", 1, None),
    "server_protocol": ("protocol", 0, None),
    "status": ("status", 0, r"\d{3}|-"),
    "body_bytes_sent": ("bytes_out", 0, _NUM),
    "bytes_sent": ("bytes_out", 1, _NUM),
    "request_length": ("bytes_in", 0, _NUM),
    "request_time": ("duration_s", 0, _DEC),
    "http_referer": ("referrer", 0, None),
    "http_user_agent": ("user_agent", 0, None),
    "scheme": ("scheme", 0, None),
    "https": ("https", 0, r"on|off|\S*?"),
    "ssl_protocol": ("tls_version", 0, None),
    "ssl_server_name": ("sni", 0, None),
    "host": ("host", 0, None),
    "http_host": ("host", 1, None),
    "server_name": ("host", 2, None),
    "server_port": ("server_port", 0, _NUM),
    "http_x_forwarded_for": ("forwarded_for", 0, None),
    "proxy_add_x_forwarded_for": ("forwarded_for", 1, None),
    "http_x_forwarded_proto": ("forwarded_proto", 0, None),
    "request_id": ("request_id", 0, None),
    "http_x_request_id": ("request_id", 1, None),
}
_SPACEY = frozenset({"request", "remote_user"})
_NGINX_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


class _Builder:
    """Accumulates regex pieces and group → raw key assignments."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.groups: list[tuple[str | None, int, str]] = []  # (raw key, rank, label)

    def literal(self, text: str) -> None:
        self.parts.append(re.escape(text))

    def field(self, key: str | None, rank: int, label: str, pattern: str) -> None:
        self.parts.append(f"({pattern})")
        self.groups.append((key, rank, label))

    def compile(self, where: str) -> tuple[re.Pattern[str], tuple[tuple[int, str], ...]]:
        best: dict[str, tuple[int, int]] = {}
        for idx, (key, rank, _label) in enumerate(self.groups):
            if key is not None and (key not in best or rank < best[key][0]):
                best[key] = (rank, idx)
        if "time" not in best:
            raise ConfigError(f"{where}: the format logs no time, so events cannot be placed")
        if not {"request", "target", "path", "method"} & best.keys():
            raise ConfigError(f"{where}: the format logs no request line or path")
        try:
            regex = re.compile("".join(self.parts) + r"\s*")
        except re.error as exc:  # pragma: no cover - patterns are built from escaped text
            raise ConfigError(f"{where}: cannot compile the format: {exc}") from None
        pairs = tuple(sorted((idx + 1, key) for key, (_r, idx) in best.items()))
        return regex, pairs


def _context_pattern(prev: str, nxt: str, known: str | None, spacey: bool = False) -> str:
    """The value pattern for a variable, from what surrounds it in the format."""
    quoted = prev.endswith('"') and nxt.startswith('"')
    if known is not None:
        return known
    if quoted:
        return _QUOTED
    if spacey:  # a request line or header that is not quoted: up to the next literal
        return r".*?"
    if prev.endswith("[") and nxt.startswith("]"):
        return r"[^\]]*"
    if nxt and not nxt[0].isspace():
        return r"\S*?"
    return r"\S*"


def _unwrap(fmt: str) -> str:
    """Accept a format pasted from a config file: quotes, ``escape=``, ``\\"``."""
    s = fmt.strip().rstrip(";")
    if s.startswith("escape="):
        s = s.split(None, 1)[1] if " " in s else ""
    pieces = re.findall(r"'((?:[^'\\]|\\.)*)'", s) if s.startswith("'") else []
    if pieces:
        s = "".join(pieces)
    return s.replace('\\"', '"').replace("\\'", "'")


class CustomParser(DictParser):
    def __init__(self, name: str, regex: re.Pattern[str], pairs: tuple[tuple[int, str], ...]):
        self.name = name
        self.regex = regex
        self.pairs = pairs

    def fields(self, text: str) -> dict[str, str] | None:
        m = self.regex.fullmatch(text)
        if m is None:
            return None
        group = m.group
        return {key: group(i) for i, key in self.pairs}


def compile_nginx(fmt: str, name: str = "nginx-custom") -> DictParser:
    """nginx ``log_format`` → parser. A JSON-shaped format becomes a JSON parser."""
    where = f"log_format {fmt!r}"
    s = _unwrap(fmt)
    if s.lstrip().startswith("{"):
        return _nginx_json(s, name, where)
    b = _Builder()
    pos = 0
    matches = list(_NGINX_VAR.finditer(s))
    if not matches:
        raise ConfigError(f"{where}: no $variables in the format")
    for i, m in enumerate(matches):
        prev = s[pos : m.start()]
        nxt_end = matches[i + 1].start() if i + 1 < len(matches) else len(s)
        nxt = s[m.end() : nxt_end]
        b.literal(prev)
        var = m.group(1) or m.group(2)
        key, rank, known = _NGINX.get(var, (None, 9, None))
        pattern = _context_pattern(prev, nxt, known, var in _SPACEY or var.startswith("http_"))
        b.field(key, rank, "$" + var, pattern)
        pos = m.end()
    b.literal(s[pos:])
    regex, pairs = b.compile(where)
    return CustomParser(name, regex, pairs)


def _nginx_json(s: str, name: str, where: str) -> DictParser:
    mapping: dict[str, tuple[int, str]] = {}
    for key, var in re.findall(r'"([^"]+)"\s*:\s*"?\$\{?(\w+)\}?', s):
        raw_key, rank, _pat = _NGINX.get(var, (None, 9, None))
        if raw_key is not None and (raw_key not in mapping or rank < mapping[raw_key][0]):
            mapping[raw_key] = (rank, key)
    if "time" not in mapping:
        raise ConfigError(f"{where}: the format logs no time, so events cannot be placed")
    return JsonParser(
        name, kinds=("generic",), user=schema({k: v for k, (_r, v) in mapping.items()})
    )


# --- Apache ------------------------------------------------------------------------------

_APACHE_DIRECTIVE = re.compile(r"%([<>]|!?\d{3}(?:,\d{3})*)*(?:\{([^}]*)\})?([a-zA-Z%])")


def _apache_field(mods: str, arg: str | None, letter: str) -> tuple[str | None, int, str | None]:
    """(raw key, rank, pattern) for one ``%`` directive."""
    a = (arg or "").lower()
    simple: dict[str, tuple[str | None, int, str | None]] = {
        "h": ("client_ip", 1, r"\S+"),
        "l": (None, 9, r"\S+"),
        "u": ("user", 0, None),
        "r": ("request", 0, None),
        "m": ("method", 0, r"\S+"),
        "U": ("path", 0, r"\S*"),
        "q": ("query", 0, r"\S*"),
        "H": ("protocol", 0, r"\S*"),
        "b": ("bytes_out", 0, _NUM),
        "B": ("bytes_out", 1, _NUM),
        "O": ("bytes_out", 2, _NUM),
        "I": ("bytes_in", 0, _NUM),
        "D": ("duration_us", 0, _NUM),
        "V": ("host", 0, r"\S+"),
        "v": ("host", 1, r"\S+"),
    }
    if letter in simple:
        return simple[letter]
    if letter == "a":
        return ("client_ip", 0, r"\S+") if not a else ("client_ip", 2, r"\S+")
    if letter == "s":
        return ("status", 0 if ">" in mods else 1, r"\d{3}|-")
    if letter == "t":
        if a.endswith("_frac"):  # the fraction of a split timestamp: not a time by itself
            return (None, 9, r"\d+")
        if a in ("sec", "msec", "usec") or a.endswith((":sec", ":msec", ":usec")):
            return ("time", 0, r"\d+")
        # %t is "[CLF]"; %{strftime}t works when it yields CLF, ISO 8601 or epoch text.
        return ("time", 0, _TIME_CLF if not a else r"[^\]\"]+?")
    if letter == "T":
        unit = {"ms": "duration_ms", "us": "duration_us"}.get(a, "duration_s")
        return (unit, 1, _NUM)
    if letter == "p":
        return ("client_port", 0, _NUM) if a == "remote" else ("server_port", 0, _NUM)
    if letter in "ex":
        key = {"https": "https", "ssl_protocol": "tls_version", "unique_id": "request_id"}.get(a)
        return (key, 0 if letter == "x" else 1, None)
    if letter == "i":
        headers = {
            "referer": ("referrer", 0),
            "user-agent": ("user_agent", 0),
            "x-forwarded-for": ("forwarded_for", 0),
            "x-forwarded-proto": ("forwarded_proto", 0),
            "host": ("host", 2),
            "x-request-id": ("request_id", 2),
        }
        hk, rank = headers.get(a, (None, 9))
        return (hk, rank, None)
    return (None, 9, None)


def compile_apache(fmt: str, name: str = "apache-custom") -> DictParser:
    """Apache ``LogFormat`` → parser."""
    where = f"LogFormat {fmt!r}"
    s = _unwrap(fmt)
    if s.startswith('"') and s.endswith('"') and len(s) > 1:
        s = s[1:-1]
    matches = list(_APACHE_DIRECTIVE.finditer(s))
    if not matches:
        raise ConfigError(f"{where}: no %directives in the format")
    b = _Builder()
    pos = 0
    for i, m in enumerate(matches):
        prev = s[pos : m.start()]
        nxt_end = matches[i + 1].start() if i + 1 < len(matches) else len(s)
        nxt = s[m.end() : nxt_end]
        b.literal(prev)
        pos = m.end()
        mods, arg, letter = m.group(1) or "", m.group(2), m.group(3)
        if letter == "%":
            b.literal("%")
            continue
        key, rank, known = _apache_field(mods, arg, letter)
        pattern = _context_pattern(prev, nxt, known, letter in "rui")
        if letter == "t" and not arg:
            # %t logs "[time]": capture inside the brackets only.
            b.literal("[")
            b.field(key, rank, "%t", pattern)
            b.literal("]")
            continue
        b.field(key, rank, m.group(0), pattern)
    b.literal(s[pos:])
    regex, pairs = b.compile(where)
    return CustomParser(name, regex, pairs)
