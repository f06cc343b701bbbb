"""Transport wrappers around a log line: syslog, journald, CRI, docker json-file, compose.

Access logs often reach us wrapped by whatever shipped them. Each stripper returns the
inner text, or ``None`` when its wrapper is not there. Decoders remember per file which
stripper worked, so a wrapped file costs one extra regex per line, a plain file none.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import orjson

Stripper = Callable[[str], str | None]

# RFC 3164 (BSD syslog) with or without <PRI>, and the RFC 3339 timestamp rsyslog writes
# by default: "<13>Oct 11 22:14:15 host nginx[12]: ...", "2024-01-01T00:00:00+00:00 host app: ...".
_RFC3164 = re.compile(
    r"(?:<\d{1,3}>)?"
    r"(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
    r" (?:[^\s:]+ )?[^\s:\[]{1,64}(?:\[\d+\])?: ?"
)
# RFC 5424: "<165>1 2003-10-11T22:14:15.003Z host app procid msgid [sd...] msg".
_RFC5424 = re.compile(
    r"<\d{1,3}>\d{1,2} \S+ \S+ \S+ \S+ \S+ "
    r'(?:-|(?:\[(?:[^\]\\"]|\\.|"(?:[^"\\]|\\.)*")*\])+)(?: \ufeff?|$)'
)
# journalctl short output without a date (fail2ban's "journal" samples): "host nginx[12]: ".
_JOURNAL = re.compile(
    r"[\w.-]{1,255} [\w./-]{1,64}\[\d+\]: (?:[\w.-]{1,255} [\w./-]{1,64}(?:\[\d+\])?: )?"
)
# Kubernetes CRI: "2024-01-01T00:00:00.000000000Z stdout F ...".
_CRI = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d) (?:stdout|stderr) [FP] "
)
# docker compose / `docker logs` prefix: "caddy  | ...".
_COMPOSE = re.compile(r"[\w.-]{1,128} +\| ")


def _regex_stripper(pattern: re.Pattern[str]) -> Stripper:
    match = pattern.match

    def strip(text: str) -> str | None:
        m = match(text)
        return text[m.end() :] if m is not None else None

    return strip


def strip_docker_json(text: str) -> str | None:
    """docker json-file: ``{"log":"...\\n","stream":"stdout","time":"..."}`` → the log text."""
    if not text.startswith('{"log":'):
        return None
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    log = obj.get("log") if isinstance(obj, dict) else None
    if not isinstance(log, str):
        return None
    return log.rstrip("\r\n")


strip_cri = _regex_stripper(_CRI)
strip_rfc3164 = _regex_stripper(_RFC3164)
strip_rfc5424 = _regex_stripper(_RFC5424)
strip_journal = _regex_stripper(_JOURNAL)
strip_compose = _regex_stripper(_COMPOSE)

# Tried in this order after the bare line; the first whose inner text parses wins.
STRIPPERS: tuple[tuple[str, Stripper], ...] = (
    ("cri", strip_cri),
    ("docker-json", strip_docker_json),
    ("rfc5424", strip_rfc5424),
    ("syslog", strip_rfc3164),
    ("journal", strip_journal),
    ("compose", strip_compose),
)


def strip_any(text: str) -> str:
    """The inner text under the first wrapper found (or the text itself): for ``explain``."""
    for _name, strip in STRIPPERS:
        inner = strip(text)
        if inner is not None:
            return inner
    return text
