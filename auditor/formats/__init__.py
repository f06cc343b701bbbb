"""Log formats: from a raw line to a normalized, redacted ``Event``.

Public API (see docs/ARCHITECTURE.md):

- ``FormatSpec(name, log_format=None, fields=None, scheme=None)``
- ``FORMAT_NAMES``: every named format (and alias)
- ``build_decoder(spec, redactor, source) -> Callable[[Line], Event | None]``
- ``parse_fields(spec, text) -> dict[str, str] | None`` (raw, unredacted: for ``explain``)
- ``detect_format(sample) -> str | None``; ``detection(sample) -> Detection | None``
  (the name and how sure: ``Detection.describe()`` → "aws-alb (20/20 sample lines)")
- ``is_directive(text)``: a ``#`` line (W3C header): never an event, never "unparsed"

One module per family: ``clf`` (nginx/Apache/Kong/Traefik CLF, the hot path),
``proxies`` (AWS ALB, HAProxy, Envoy text), ``jsonfmt`` (Caddy, Traefik, Envoy,
Cloudflare, Kong, ECS, nginx JSON), ``w3c`` (IIS / W3C extended, CloudFront), ``nginx_error``, ``custom`` (``log_format``/``LogFormat``),
``prefixes`` (syslog, CRI, docker wrappers), ``times``, ``event``, ``registry``, ``decoder``.
"""

from __future__ import annotations

from auditor.formats.decoder import FormatChoice, SourceDecoder, build_decoder, parse_fields
from auditor.formats.registry import (
    ALIASES,
    DETECT_ORDER,
    FORMAT_NAMES,
    Detection,
    detect_format,
    detection,
)
from auditor.formats.spec import FormatSpec
from auditor.formats.w3c import is_directive

__all__ = [
    "ALIASES",
    "DETECT_ORDER",
    "FORMAT_NAMES",
    "Detection",
    "FormatChoice",
    "FormatSpec",
    "SourceDecoder",
    "build_decoder",
    "detect_format",
    "detection",
    "is_directive",
    "parse_fields",
]
