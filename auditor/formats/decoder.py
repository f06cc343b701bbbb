"""``build_decoder``: a spec → the per-line object the pipeline calls.

Each file remembers the format and the transport wrapper that last worked for it, so a
steady file costs one regex match (or one JSON parse) per line.

A *named* format is tried under other wrappers when a line stops parsing (a syslog
wrapper that comes and goes), never as another format.

``auto`` detects per file. The first line that strictly fits a format chooses it (a W3C
``#Fields:`` header chooses by itself); the first ``SAMPLE`` lines measure how sure that
is ("aws-alb (20/20 sample lines)"), and if most of them strictly fit another format the
choice is corrected. From then on a line that does not fit the chosen format is unparsed
(it is not silently read as another format), except for companion formats that may share
a file (nginx access and error lines). After ``REDETECT_AFTER`` consecutive unparsed lines
the recent lines are detected again, and if another format fits most of them the file
switches to it. Each choice and switch is reported by ``take_choices`` (the shell
journals them; ``status`` shows the latest). Nothing raises.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from auditor.errors import ConfigError
from auditor.formats.prefixes import STRIPPERS, Stripper
from auditor.formats.registry import (
    auto_parser,
    companions,
    detect_line,
    detection,
    detectors,
    parser_for,
)
from auditor.formats.spec import (
    BoundDecode,
    Ctx,
    FormatSpec,
    Parser,
    RawDecode,
    raw_form,
)
from auditor.formats.w3c import W3cDecode, W3cParser, header_layout, is_directive
from auditor.model import Event, Line
from auditor.normalize import RedactorLike, norm_scheme

log = logging.getLogger(__name__)

_WRAPPERS: tuple[Stripper | None, ...] = (None, *(s for _n, s in STRIPPERS))
SAMPLE = 20
"""Lines of a file that measure (and may correct) what ``auto`` chose."""
REDETECT_AFTER = 5
"""Consecutive unparsed lines after which ``auto`` looks at a file's format again."""

__all__ = ["REDETECT_AFTER", "SAMPLE", "FormatChoice", "SourceDecoder", "is_directive"]


def _check_scheme(spec: FormatSpec) -> str | None:
    if spec.scheme is None:
        return None
    scheme = norm_scheme(spec.scheme)
    if scheme is None:
        raise ConfigError(f"scheme {spec.scheme!r}: expected 'http' or 'https'")
    return scheme


@dataclass(frozen=True, slots=True)
class FormatChoice:
    """What ``auto`` decided for one file, for the journal and ``status``."""

    source: str
    file: str
    format: str
    matched: int  # sample lines that fit the format (or a companion)
    sampled: int  # sample lines looked at so far (directives and blank lines not counted)
    previous: str | None = None  # the format before a switch
    header: bool = False  # chosen from a W3C ``#Fields:`` header

    def describe(self) -> str:
        how = f"{self.matched}/{self.sampled} sample lines"
        text = f"{self.format} (#Fields header, {how})" if self.header else f"{self.format} ({how})"
        if self.previous is not None and self.previous != self.format:
            text += f", was {self.previous}"
        return text


class _FileState:
    """``auto``'s view of one file."""

    __slots__ = (
        "dec",
        "format",
        "header",
        "matched",
        "miss_end",
        "miss_offset",
        "misses",
        "previous",
        "recent",
        "sampled",
        "strip",
        "tally",
    )

    def __init__(self) -> None:
        self.format: str | None = None
        self.dec: BoundDecode | None = None
        self.strip: Stripper | None = None
        self.sampled = 0
        self.matched = 0
        self.tally: dict[str, int] = {}
        self.misses = 0
        self.miss_end = -1
        self.miss_offset = -1
        self.recent: deque[str] = deque(maxlen=REDETECT_AFTER)
        self.previous: str | None = None
        self.header = False


def _decode_wrapped(
    dec: BoundDecode, text: str, line: Line
) -> tuple[Event, Stripper | None] | None:
    for strip in _WRAPPERS:
        inner = text if strip is None else strip(text)
        if inner is None:
            continue
        ev = dec(inner, line)
        if ev is not None:
            return ev, strip
    return None


class _Named:
    """The slow path of a named format: the same parser under another wrapper."""

    def __init__(self, parser: Parser, ctx: Ctx) -> None:
        self.dec = parser.bind(ctx)
        self.states: dict[str, tuple[BoundDecode, Stripper | None]] = {}

    def find(self, text: str, line: Line) -> Event | None:
        if not text or text.isspace():
            return None
        found = _decode_wrapped(self.dec, text, line)
        if found is None:
            return None
        self.states[line.file] = (self.dec, found[1])
        return found[0]


class _Auto:
    """The slow path of ``auto``: choose, measure, correct and switch formats per file."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.states: dict[str, tuple[BoundDecode, Stripper | None]] = {}
        self.files: dict[str, _FileState] = {}
        self.bound: dict[str, BoundDecode] = {}
        self.dirty: dict[str, None] = {}
        # Strict detectors first; lenient CLF parsing only when nothing fits strictly.
        self.lenient = auto_parser("combined").bind(ctx)

    def bound_for(self, name: str) -> BoundDecode:
        dec = self.bound.get(name)
        if dec is None:
            if name in ("w3c", "cloudfront"):
                dec = self.bound.get("w3c")
                if dec is None:
                    dec = W3cParser("w3c", kind_names=True).bind(self.ctx)
                    self.bound["w3c"] = dec
            else:
                dec = auto_parser(name).bind(self.ctx)
            self.bound[name] = dec
        return dec

    def w3c(self) -> W3cDecode:
        dec = self.bound_for("w3c")
        assert isinstance(dec, W3cDecode)
        return dec

    # -- choosing ----------------------------------------------------------------------

    def _set(
        self, file: str, st: _FileState, name: str, dec: BoundDecode, strip: Stripper | None
    ) -> None:
        if st.format is not None and st.format != name:
            st.previous = st.format
        st.format, st.dec, st.strip = name, dec, strip
        st.misses = 0
        st.recent.clear()
        self.dirty[file] = None
        if st.sampled >= SAMPLE:
            self.states[file] = (dec, strip)
        else:
            self.states.pop(file, None)  # still sampling: every line takes the slow path

    def _choose(self, text: str, line: Line, st: _FileState) -> Event | None:
        found = detect_line(text)
        if found is not None:
            name, strip = found
            dec = self.bound_for(name)
            inner = text if strip is None else strip(text)
            ev = dec(inner, line) if inner is not None else None
            if ev is not None:
                self._set(line.file, st, name, dec, strip)
                return ev
        lenient = _decode_wrapped(self.lenient, text, line)
        if lenient is not None:
            self._set(line.file, st, "combined", self.lenient, lenient[1])
            return lenient[0]
        return None

    def _directive(self, text: str, line: Line) -> None:
        lay = header_layout(text.strip())
        if lay is None:
            return
        st = self.files.get(line.file)
        if st is None:
            st = self.files[line.file] = _FileState()
        w3c = self.w3c()
        w3c.header(line.file, text.strip())
        st.header = True
        if st.format != lay.kind:
            self._set(line.file, st, lay.kind, w3c, None)

    # -- per line ----------------------------------------------------------------------

    def _with_chosen(self, text: str, line: Line, st: _FileState) -> Event | None:
        assert st.dec is not None and st.format is not None
        found = _decode_wrapped(st.dec, text, line)
        if found is not None:
            if found[1] is not st.strip:  # the wrapper changed (syslog on, then off)
                st.strip = found[1]
                if line.file in self.states:
                    self.states[line.file] = (st.dec, st.strip)
            return found[0]
        family = companions(st.format)
        if len(family) > 1:
            other = detect_line(text)
            if other is not None and other[0] in family:
                inner = text if other[1] is None else other[1](text)
                if inner is not None:
                    return self.bound_for(other[0])(inner, line)
        return None

    def _sample(self, text: str, st: _FileState, ev: Event | None, file: str) -> None:
        st.sampled += 1
        if ev is not None:
            st.matched += 1
        if not st.header:
            found = detect_line(text)
            if found is not None:
                st.tally[found[0]] = st.tally.get(found[0], 0) + 1
        if st.sampled < SAMPLE:
            return
        self.dirty[file] = None
        if st.format is None:
            return
        if st.tally and not st.header:
            best = max(st.tally, key=lambda n: st.tally[n])
            if best != st.format and st.tally[best] > st.tally.get(st.format, 0):
                # Most of the sample strictly fits another format: the first line misled.
                st.matched = st.tally[best]
                self._set(file, st, best, self.bound_for(best), None)
                return
        self.states[file] = (st.dec, st.strip)  # type: ignore[assignment]

    def _missed(self, text: str, line: Line, st: _FileState) -> Event | None:
        # Consecutive: this line starts where the last miss ended (offsets that do not grow,
        # as from `explain` or a file replaced by a new one, count as consecutive too).
        after_last = line.offset == st.miss_end or line.offset <= st.miss_offset
        st.misses = st.misses + 1 if after_last else 1
        st.miss_end, st.miss_offset = line.end, line.offset
        if st.misses == 1:
            st.recent.clear()
        st.recent.append(text)
        if st.misses < REDETECT_AFTER:
            return None
        found = detection(list(st.recent))
        st.misses = 0
        if found is None or found.name == st.format or found.matched * 2 <= found.sampled:
            return None
        # The file changed format (a new server version, a rotation into another logger).
        self._set(line.file, st, found.name, self.bound_for(found.name), None)
        again = _decode_wrapped(self.bound_for(found.name), text, line)
        if again is None:
            return None
        st.strip = again[1]
        if st.sampled >= SAMPLE:
            self.states[line.file] = (st.dec, st.strip)  # type: ignore[assignment]
        return again[0]

    def find(self, text: str, line: Line) -> Event | None:
        if not text or text.isspace():
            return None
        if text[0] == "#":
            self._directive(text, line)
            return None
        file = line.file
        st = self.files.get(file)
        if st is None:
            st = self.files[file] = _FileState()
        if st.format is None:
            ev = self._choose(text, line, st)
        else:
            ev = self._with_chosen(text, line, st)
        if st.sampled < SAMPLE:
            self._sample(text, st, ev, file)
        if ev is None and st.format is not None:
            return self._missed(text, line, st)
        return ev

    def take_choices(self) -> list[FormatChoice]:
        out: list[FormatChoice] = []
        for file in self.dirty:
            st = self.files.get(file)
            if st is None or st.format is None:
                continue
            out.append(
                FormatChoice(
                    self.ctx.source,
                    file,
                    st.format,
                    st.matched,
                    st.sampled,
                    st.previous,
                    st.header,
                )
            )
        self.dirty.clear()
        return out


class SourceDecoder:
    """``decoder(line) -> Event | None`` for one source (``None``: unparsed, or a
    directive line: see ``is_directive``). ``take_choices()`` drains what ``auto``
    decided since the last call. Never raises on any line."""

    __slots__ = ("_decode", "_slow", "auto", "direct", "redactor")

    def __init__(self, spec: FormatSpec, redactor: RedactorLike, source: str) -> None:
        ctx = Ctx(source, redactor, _check_scheme(spec))
        self.redactor = redactor  # the bytes form leaves the target to it (see raw_for)
        parser = parser_for(spec)
        self.auto = parser is None
        slow: _Auto | _Named = _Auto(ctx) if parser is None else _Named(parser, ctx)
        self._slow = slow
        self._decode = _fast_path(slow.states, slow.find)
        # The same function without this object's call around it (a hot loop's own).
        self.direct: Callable[[Line], Event | None] = self._decode

    def __call__(self, line: Line) -> Event | None:
        return self._decode(line)

    def raw_for(self, file: str) -> RawDecode | None:
        """The bytes form of this decoder for ``file``'s lines (``RawDecode``: the target
        is left to ``redactor``), once it has one:
        a named format whose parser gives one (JSON), settled for the file by a line already
        decoded, with no prefix (syslog, container) to strip. ``auto`` never: it watches
        every line it decodes."""
        if self.auto:
            return None
        state = self._slow.states.get(file)
        if state is None or state[1] is not None:
            return None
        return raw_form(state[0])

    def take_choices(self) -> list[FormatChoice]:
        slow = self._slow
        return slow.take_choices() if isinstance(slow, _Auto) else []


def _fast_path(
    states: dict[str, tuple[BoundDecode, Stripper | None]],
    find: Callable[[str, Line], Event | None],
) -> Callable[[Line], Event | None]:
    get = states.get

    def decode(line: Line) -> Event | None:
        try:
            text = line.text
            state = get(line.file)
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


def build_decoder(spec: FormatSpec, redactor: RedactorLike, source: str) -> SourceDecoder:
    """The decoder for one source. Raises ``ConfigError`` for a bad spec, never per line."""
    return SourceDecoder(spec, redactor, source)


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
