"""``build_decoder``: a spec → the per-line hot function the pipeline calls.

Each file remembers the format and the transport wrapper that last worked for it, so a
steady file costs one regex match per line. When a line stops parsing, the decoder looks
again (other wrappers, and in ``auto`` mode other formats) and sticks to what fits next:
mixed files and a format change after rotation both keep working. Nothing raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from auditor.errors import ConfigError
from auditor.formats.prefixes import STRIPPERS, Stripper
from auditor.formats.registry import detectors, parser_for
from auditor.formats.spec import BoundDecode, Ctx, FormatSpec, Parser
from auditor.model import Event, Line
from auditor.normalize import RedactorLike, norm_scheme

log = logging.getLogger(__name__)

_WRAPPERS: tuple[Stripper | None, ...] = (None, *(s for _n, s in STRIPPERS))


def _check_scheme(spec: FormatSpec) -> str | None:
    if spec.scheme is None:
        return None
    scheme = norm_scheme(spec.scheme)
    if scheme is None:
        raise ConfigError(f"scheme {spec.scheme!r}: expected 'http' or 'https'")
    return scheme


class _Finder:
    """The slow path: find the format and wrapper that fit a line, and remember them."""

    def __init__(self, parsers: tuple[Parser, ...], ctx: Ctx, auto: bool) -> None:
        self.bound: list[tuple[Parser, BoundDecode]] = [(p, p.bind(ctx)) for p in parsers]
        self.auto = auto
        # After the strict pass, only parsers that accept more than their probe can help.
        self.loose = [dec for p, dec in self.bound if not auto or p.lenient]
        self.states: dict[str, tuple[BoundDecode, Stripper | None]] = {}

    def _by_probe(self, text: str, line: Line) -> Event | None:
        # Strict probes choose the format, so a plain combined line is not claimed by a
        # more lenient superset (Traefik CLF); lenient decoding is the fallback.
        for strip in _WRAPPERS:
            inner = text if strip is None else strip(text)
            if inner is None:
                continue
            for p, dec in self.bound:
                if p.lenient and not p.probe(inner):
                    continue
                ev = dec(inner, line)
                if ev is not None:
                    self.states[line.file] = (dec, strip)
                    return ev
        return None

    def find(self, text: str, line: Line) -> Event | None:
        if not text or text.isspace():
            return None
        if self.auto:
            ev = self._by_probe(text, line)
            if ev is not None:
                return ev
        current = self.states.get(line.file)
        decoders = self.loose
        if current is not None:
            decoders = [current[0], *decoders]
        for strip in _WRAPPERS:
            inner = text if strip is None else strip(text)
            if inner is None:
                continue
            for dec in decoders:
                ev = dec(inner, line)
                if ev is not None:
                    self.states[line.file] = (dec, strip)
                    return ev
        return None


def build_decoder(
    spec: FormatSpec, redactor: RedactorLike, source: str
) -> Callable[[Line], Event | None]:
    """The decoder for one source. Raises ``ConfigError`` for a bad spec, never per line."""
    ctx = Ctx(source, redactor, _check_scheme(spec))
    parser = parser_for(spec)
    finder = _Finder(detectors() if parser is None else (parser,), ctx, parser is None)
    states = finder.states
    find = finder.find

    def decode(line: Line) -> Event | None:
        try:
            text = line.text
            state = states.get(line.file)
            if state is not None:
                dec, strip = state
                if strip is None:
                    ev = dec(text, line)
                else:
                    inner = strip(text)
                    ev = dec(inner, line) if inner is not None else None
                if ev is not None:
                    return ev
            return find(text, line)
        except Exception:  # a bad line is normal input: never let it stop the pipeline
            log.debug("cannot decode %s:%d", line.file, line.offset, exc_info=True)
            return None

    return decode


def parse_fields(spec: FormatSpec, text: str) -> dict[str, str] | None:
    """The raw fields of one line, for ``log-auditor explain``.

    Values are as logged, i.e. *not redacted*: pass them through the redactor before
    showing them to anyone.
    """
    parser = parser_for(spec)
    candidates: tuple[Parser, ...] = detectors() if parser is None else (parser,)
    try:
        for strip in _WRAPPERS:
            inner = text if strip is None else strip(text)
            if inner is None:
                continue
            for p in candidates:
                if parser is None and not p.probe(inner):
                    continue
                fields = p.fields(inner)
                if fields is not None:
                    return fields
        if parser is None:
            for strip in _WRAPPERS:
                inner = text if strip is None else strip(text)
                for p in candidates:
                    fields = p.fields(inner) if inner is not None else None
                    if fields is not None:
                        return fields
    except Exception:
        log.debug("cannot parse fields", exc_info=True)
    return None
