"""Named formats, their aliases, and ``--format auto`` detection.

Detection tries strict patterns, most specific first (an ALB line is also "some text with
quotes"; a Traefik CLF line is also a combined line), on the bare line and under each
transport wrapper (syslog, CRI, ...), and keeps the format that fits the most sample lines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from auditor.errors import ConfigError
from auditor.formats.clf import ClfParser
from auditor.formats.custom import compile_apache, compile_nginx
from auditor.formats.event import DictParser
from auditor.formats.jsonfmt import JsonParser, user_schema
from auditor.formats.nginx_error import NginxErrorParser
from auditor.formats.prefixes import STRIPPERS
from auditor.formats.proxies import AlbParser, EnvoyTextParser, HaproxyParser
from auditor.formats.spec import FormatSpec, Parser


class EnvoyParser(DictParser):
    """Envoy: the default text format, or JSON (``json_format``) on the same name."""

    def __init__(self, name: str = "envoy") -> None:
        self.name = name
        self.text = EnvoyTextParser(name)
        self.json = JsonParser(name, kinds=("envoy",))

    def fields(self, text: str) -> dict[str, str] | None:
        return self.json.fields(text) if text[:1] == "{" else self.text.fields(text)


_FACTORIES: dict[str, Callable[[str], Parser]] = {
    "combined": lambda n: ClfParser(n, "combined"),
    "common": lambda n: ClfParser(n, "common"),
    "vhost-combined": lambda n: ClfParser(n, "vhost"),
    "traefik-clf": lambda n: ClfParser(n, "traefik"),
    "kong": lambda n: ClfParser(n, "combined"),
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
    "traefik-clf",
    "vhost-combined",
    "combined",
    "common",
    "nginx-error",
    "json",
)


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


def _detected_name(text: str) -> str | None:
    """The first detector (in order) that strictly fits the line, bare or unwrapped."""
    for strip in (None, *(s for _n, s in STRIPPERS)):
        inner = text if strip is None else strip(text)
        if inner is None:
            continue
        for parser in _DETECTORS:
            if isinstance(parser, JsonParser):
                name = parser.name_for(inner)
                if name is not None:
                    return name
            elif parser.probe(inner):
                return parser.name
    return None


def detect_format(sample: Sequence[str]) -> str | None:
    """The named format that strictly fits most of ``sample`` (blank and ``#`` lines skipped)."""
    counts: dict[str, int] = {}
    for s in sample:
        if s.strip() and not s.lstrip().startswith("#"):
            name = _detected_name(s)
            if name is not None:
                counts[name] = counts.get(name, 0) + 1
    if not counts:
        return None
    return max(counts, key=lambda n: counts[n])  # dicts keep first-seen order on ties
