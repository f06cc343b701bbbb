"""Extra request headers of a webhook output: names and values checked, files parsed (pure).

Collectors want their own credentials (Splunk HEC: ``Authorization: Splunk <token>``,
others ``Authorization: Bearer <token>`` or a tenant header). Non-secret ones come from
the config's ``headers`` table; secret ones from a ``headers_file`` of ``Name: value``
lines, like an HTTP request's header block (blank lines and ``#`` comment lines allowed).

Every problem is a ``ValueError`` whose message completes "key '...': <message>". A
message may name a header (once it is a valid name) and a line number, never a value or
the text of a line: in a headers file both may be a token.
"""

from __future__ import annotations

import re

Headers = tuple[tuple[str, str], ...]

# Ours: the signed ones, and those the HTTP client must set for the body to arrive whole.
RESERVED = frozenset({"content-type", "content-length", "host", "transfer-encoding", "connection"})
RESERVED_PREFIX = "x-log-auditor-"

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 section 5.6.2
_VALUE = re.compile(r"[\t\x20-\x7e]*")  # visible ASCII, space and tab


def name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as an extra header's name, or None."""
    if not _TOKEN.fullmatch(name):
        return "not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)"
    low = name.lower()
    if low in RESERVED or low.startswith(RESERVED_PREFIX):
        return "set by log-auditor itself, it cannot be replaced"
    return None


def value_problem(value: str) -> str | None:
    """What is wrong with ``value`` (already stripped of surrounding blanks), or None."""
    if "\r" in value or "\n" in value:
        return "the value contains a line break (CR or LF)"
    if not value:
        return "the value is empty"
    if not _VALUE.fullmatch(value):
        return "the value contains a control or non-ASCII character"
    return None


def check_header(name: str, value: str) -> tuple[str, str]:
    """``(name, value)`` with the value's surrounding blanks removed, or ``ValueError``."""
    value = value.strip(" \t")
    problem = name_problem(name) or value_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return name, value


def check_unique(headers: Headers) -> None:
    """Two headers of the same name (names are case-insensitive) would hide one another."""
    seen: set[str] = set()
    for name, _ in headers:
        if name.lower() in seen:
            raise ValueError(f"header {name} is set twice")
        seen.add(name.lower())


def parse_header_lines(text: str) -> Headers:
    """The headers of a headers file's text; ``ValueError("line N: ...")`` on a bad line."""
    out: list[tuple[str, str]] = []
    first_line: dict[str, int] = {}
    # Only "\n" ends a line (a trailing "\r" goes with it): a CR elsewhere is an error.
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r").strip(" \t")
        if not line or line.startswith("#"):
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"line {number}: expected 'Name: value'")
        try:
            header = check_header(name, value)
        except ValueError as exc:
            # A name is shown once it is a valid one: an invalid one may be part of a token.
            shown = f" header {name}:" if _TOKEN.fullmatch(name) else ""
            raise ValueError(f"line {number}:{shown} {exc}") from None
        earlier = first_line.setdefault(name.lower(), number)
        if earlier != number:
            raise ValueError(f"line {number}: header {name} is already set on line {earlier}")
        out.append(header)
    return tuple(out)


def format_header_lines(headers: Headers) -> bytes:
    """The inverse of ``parse_header_lines`` for checked headers."""
    return "".join(f"{name}: {value}\n" for name, value in headers).encode("ascii")
