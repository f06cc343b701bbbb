"""Log formats: from a raw line to a normalized, redacted ``Event``.

Public API (see docs/ARCHITECTURE.md):

- ``FormatSpec(name, log_format=None, fields=None, scheme=None)``
- ``FORMAT_NAMES``: every named format (and alias)
- ``build_decoder(spec, redactor, source) -> Callable[[Line], Event | None]``
- ``parse_fields(spec, text) -> dict[str, str] | None`` (raw, unredacted: for ``explain``)
- ``detect_format(sample) -> str | None``

One module per family: ``clf`` (nginx/Apache/Kong/Traefik CLF, the hot path),
``proxies`` (AWS ALB, HAProxy, Envoy text), ``jsonfmt`` (Caddy, Traefik, Envoy,
Cloudflare, ECS, nginx JSON), ``nginx_error``, ``custom`` (``log_format``/``LogFormat``),
``prefixes`` (syslog, CRI, docker wrappers), ``times``, ``event``, ``registry``, ``decoder``.
"""

from __future__ import annotations

from auditor.formats.decoder import build_decoder, parse_fields
from auditor.formats.registry import ALIASES, DETECT_ORDER, FORMAT_NAMES, detect_format
from auditor.formats.spec import FormatSpec

__all__ = [
    "ALIASES",
    "DETECT_ORDER",
    "FORMAT_NAMES",
    "FormatSpec",
    "build_decoder",
    "detect_format",
    "parse_fields",
]
