"""Named formats, their aliases, and ``--format auto`` detection.

Detection tries strict patterns, most specific first (an ALB line is also "some text with
quotes"; a Traefik CLF line is also a combined line), on the bare line and under each
transport wrapper (syslog, CRI, ...), and keeps the format that fits the most sample lines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from auditor.errors import ConfigError
from auditor.formats.clf import ClfParser
from auditor.formats.custom import compile_apache, compile_nginx
from auditor.formats.event import DictParser
from auditor.formats.jsonfmt import JsonParser, user_schema
from auditor.formats.nginx_error import NginxErrorParser
from auditor.formats.prefixes import STRIPPERS, Stripper
from auditor.formats.proxies import AlbParser, EnvoyTextParser, HaproxyParser
from auditor.formats.spec import BoundDecode, Ctx, FormatSpec, Parser
from auditor.formats.w3c import Layout, W3cParser, header_layout
from auditor.formats.w3c import raw_fields as w3c_fields


class _TextOrJson(DictParser):
    """A format logged as text or as JSON under one name: a line that opens with '{' is
    the JSON one (``self.json``), any other the text one (``self.text``)."""

    text: Parser
    json: JsonParser

    def fields(self, text: str) -> dict[str, str] | None:
        return self.json.fields(text) if text[:1] == "{" else self.text.fields(text)

    def bind(self, ctx: Ctx) -> BoundDecode:
        # the JSON decoder hands the other lines to the text one itself
        return self.json.bind(ctx, otherwise=self.text.bind(ctx))


class EnvoyParser(_TextOrJson):
    """Envoy: the default text format, or JSON (``json_format``) on the same name."""

    def __init__(self, name: str = "envoy") -> None:
        self.name = name
        self.text = EnvoyTextParser(name)
        self.json = JsonParser(name, kinds=("envoy",))


class KongParser(_TextOrJson):
    """Kong: its nginx-style access log, or the JSON of the file-log / http-log plugins."""

    lenient = True

    def __init__(self, name: str = "kong") -> None:
        self.name = name
        self.text = ClfParser(name, "combined")
        self.json = JsonParser(name, kinds=("kong",))

    def probe(self, text: str) -> bool:
        return self.json.probe(text) if text[:1] == "{" else self.text.probe(text)


# Nginx Proxy Manager's "proxy" log_format (and front ends built on it).
NPM_LOG_FORMAT = (
    "[$time_local] $upstream_cache_status $upstream_status $status - $request_method $scheme"
    ' $host "$request_uri" [Client $remote_addr] [Length $body_bytes_sent] [Gzip $gzip_ratio]'
    ' [Sent-to $server] "$http_user_agent" "$http_referer"'
)

_FACTORIES: dict[str, Callable[[str], Parser]] = {
    "combined": lambda n: ClfParser(n, "combined"),
    "common": lambda n: ClfParser(n, "common"),
    "vhost-combined": lambda n: ClfParser(n, "vhost"),
    "traefik-clf": lambda n: ClfParser(n, "traefik"),
    "kong": KongParser,
    "kong-json": lambda n: JsonParser(n, kinds=("kong",)),
    "nginx-proxy-manager": lambda n: compile_nginx(NPM_LOG_FORMAT, n),
    "w3c": lambda n: W3cParser(n, ("w3c",)),
    "cloudfront": lambda n: W3cParser(n, ("cloudfront",)),
    "aws-alb": AlbParser,
    "haproxy": HaproxyParser,
    "envoy": EnvoyParser,
    "nginx-error": NginxErrorParser,
    "json": lambda n: JsonParser(n),
    "caddy": lambda n: JsonParser(n, kinds=("caddy",)),
    "traefik-json": lambda n: JsonParser(n, kinds=("traefik",)),
    "cloudflare": lambda n: JsonParser(n, kinds=("cloudflare",)),
}

ALIASES: dict[str, str] = {
    "nginx-combined": "combined",
    "apache-combined": "combined",
    "nginx-common": "common",
    "apache-common": "common",
    "clf": "common",
    "vhost_combined": "vhost-combined",
    "apache-vhost-combined": "vhost-combined",
    "alb": "aws-alb",
    "haproxy-http": "haproxy",
    "traefik": "traefik-json",
    "caddy-json": "caddy",
    "envoy-json": "envoy",
    "npm": "nginx-proxy-manager",
    "iis": "w3c",
    "w3c-extended": "w3c",
    "aws-cloudfront": "cloudfront",
}

FORMAT_NAMES: tuple[str, ...] = tuple(sorted((*_FACTORIES, *ALIASES)))
"""Every named format (canonical names and aliases), for ``--format`` and config."""

# Most specific first. Ties in detect_format go to the earlier entry. "json" stands for
# every JSON flavour (Caddy, Traefik, Envoy, Cloudflare, ECS, nginx JSON): one parser
# names each event after the flavour it recognised.
DETECT_ORDER: tuple[str, ...] = (
    "aws-alb",
    "haproxy",
    "envoy",
    "nginx-proxy-manager",
    "traefik-clf",
    "vhost-combined",
    "combined",
    "common",
    "nginx-error",
    "json",
    "w3c",
)
# Formats that may share one file (CrowdSec's "nginx" type reads access and error lines
# from one stream): in ``auto`` a line of a companion format is not a format change.
FAMILIES: tuple[frozenset[str], ...] = (
    frozenset(("combined", "common", "vhost-combined", "traefik-clf", "kong", "nginx-error")),
)


def companions(name: str) -> frozenset[str]:
    """The formats that may interleave with ``name`` in one file (itself included)."""
    for family in FAMILIES:
        if name in family:
            return family
    return frozenset((name,))


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


def named_parser(name: str) -> Parser:
    """The parser for a named format; ``Event.format`` will carry ``name`` as given."""
    factory = _FACTORIES.get(canonical(name))
    if factory is None:
        known = ", ".join(("auto", *FORMAT_NAMES))
        raise ConfigError(f"unknown log format {name!r}; known formats: {known}")
    return factory(name)


def _detector(name: str) -> Parser:
    if name == "envoy":
        return EnvoyTextParser(name)  # its JSON form is covered by the "json" detector
    if name == "json":
        return JsonParser(name, kind_names=True)
    if name == "w3c":
        return W3cParser(name, kind_names=True)
    return named_parser(name)


def auto_parser(name: str) -> Parser:
    """The parser ``auto`` binds for a detected name: strict to that flavour, so a file
    detected as Caddy does not also take Traefik records (``json``: ECS and generic)."""
    if name == "json":
        return JsonParser(name, kinds=("ecs", "generic"))
    return named_parser(name)


_DETECTORS: tuple[Parser, ...] = tuple(_detector(n) for n in DETECT_ORDER)


def detectors() -> tuple[Parser, ...]:
    """One parser per named format, in detection order (shared, stateless)."""
    return _DETECTORS


def parser_for(spec: FormatSpec) -> Parser | None:
    """The parser a spec names; ``None`` for ``auto``. Raises ``ConfigError`` on bad specs."""
    if spec.log_format is not None:
        fmt = spec.log_format
        name = spec.name if spec.name not in ("auto", "") else ""
        apache = name.startswith("apache") or (not name.startswith("nginx") and "$" not in fmt)
        if apache:
            return compile_apache(fmt, name or "apache-custom")
        return compile_nginx(fmt, name or "nginx-custom")
    if spec.fields is not None:
        name = spec.name if spec.name not in ("auto", "") else "json"
        user = user_schema(spec.fields, f"format {name!r}")
        kinds = ("caddy",) if canonical(name) == "caddy" else None
        return JsonParser(name, kinds=kinds, user=user)
    if spec.name in ("auto", ""):
        return None
    if spec.name in ("nginx-custom", "apache-custom"):
        raise ConfigError(
            f"format {spec.name!r} needs log_format (the LogFormat/log_format string)"
        )
    return named_parser(spec.name)


def detect_line(text: str) -> tuple[str, Stripper | None] | None:
    """The first detector (in order) that strictly fits the line, bare or unwrapped:
    (format name, the wrapper's stripper or ``None``)."""
    for strip in (None, *(s for _n, s in STRIPPERS)):
        inner = text if strip is None else strip(text)
        if inner is None:
            continue
        for parser in _DETECTORS:
            if isinstance(parser, JsonParser | W3cParser):
                name = parser.name_for(inner)
                if name is not None:
                    return name, strip
            elif parser.probe(inner):
                return parser.name, strip
    return None


def _detected_name(text: str) -> str | None:
    found = detect_line(text)
    return None if found is None else found[0]


@dataclass(frozen=True, slots=True)
class Detection:
    """What ``auto`` chose from a sample, and how sure it is."""

    name: str
    matched: int  # sample lines that fit ``name`` (or, for W3C, the header that names it)
    sampled: int  # sample lines looked at (blank and directive lines not counted)
    header: bool = False  # chosen from a W3C ``#Fields:`` header

    def describe(self) -> str:
        how = f"{self.matched}/{self.sampled} sample lines"
        return f"{self.name} (#Fields header, {how})" if self.header else f"{self.name} ({how})"


def detection(sample: Sequence[str]) -> Detection | None:
    """The named format that strictly fits most of ``sample``; a W3C ``#Fields:`` header
    decides by itself (IIS/W3C or CloudFront). Blank and ``#`` lines are not counted."""
    counts: dict[str, int] = {}
    header: Layout | None = None
    fit_header = sampled = 0
    for s in sample:
        if not s.strip():
            continue
        if s.lstrip().startswith("#"):
            header = header_layout(s.strip()) or header
            continue
        sampled += 1
        if header is not None:
            fit_header += w3c_fields(header, s) is not None
            continue
        name = _detected_name(s)
        if name is not None:
            counts[name] = counts.get(name, 0) + 1
    if header is not None:
        return Detection(header.kind, fit_header, sampled, header=True)
    if not counts:
        return None
    best = max(counts, key=lambda n: counts[n])  # dicts keep first-seen order on ties
    fits = sum(n for name, n in counts.items() if name in companions(best))
    return Detection(best, fits, sampled)


def detect_format(sample: Sequence[str]) -> str | None:
    """The named format that strictly fits most of ``sample`` (see ``detection``)."""
    found = detection(sample)
    return None if found is None else found.name
