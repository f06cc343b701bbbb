"""Cutting a byte stream into complete lines with their offsets. Pure.

Only complete lines go on: a partial last line waits for its newline. A line longer than
``max_len`` bytes is cut to ``max_len`` and flagged ``truncated`` (memory stays bounded).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from auditor.model import Line


class _LineDraft:
    """Builds a genuine ``Line`` about four times faster than its frozen constructor: plain
    slots are filled, then the object becomes a ``Line`` (same slot layout; see
    ``auditor.formats.event._Draft`` for the same trick on events)."""

    __slots__ = Line.__slots__

    def __init__(
        self, source: str, file: str, offset: int, end: int, text: str, truncated: bool
    ) -> None:
        self.source = source
        self.file = file
        self.offset = offset
        self.end = end
        self.text = text
        self.truncated = truncated
        self.replay = False
        self.__class__ = Line  # type: ignore[assignment]


_new_line = cast(Callable[[str, str, int, int, str, bool], Line], _LineDraft)
LONG_LINE = 600
"""A chunk whose first line is at least this long is cut with ``find``, not ``split``
(see ``LineSplitter._feed_ascii``): the two cost the same at about 470 bytes a line."""


@dataclass(slots=True)
class LineSplitter:
    """Stateful splitter for one file: feed chunks, get complete lines.

    ``offset`` is the file offset of the first byte not yet returned as part of a line.
    When a single line exceeds ``max_len`` its excess is skipped until the newline.
    """

    source: str
    file: str
    offset: int
    max_len: int = 65536
    _buf: bytes = b""
    _skipping: bool = False  # inside an over-long line whose head was already emitted

    def feed(self, chunk: bytes) -> list[Line]:
        buf = self._buf + chunk if self._buf else chunk
        if not self._skipping:
            last = buf.rfind(b"\n")
            if last >= 0 and buf.isascii():
                return self._feed_ascii(buf, last)
        return self._feed_bytes(buf)

    def _feed_ascii(self, buf: bytes, last: int) -> list[Line]:
        """The common case: decode every complete line at once (byte offsets are character
        offsets in ASCII) and split; over-long and CR-ended lines are cut like below."""
        text = buf[: last + 1].decode("ascii")
        source, file, max_len = self.source, self.file, self.max_len
        crlf = "\r" in text
        make = _new_line
        out: list[Line] = []
        base = self.offset  # ASCII: a character's index is its byte's offset from here
        if text.find("\n", 0, LONG_LINE) < 0:
            # Long lines (the first one tells): each found with ``find`` (memchr), not
            # ``split``, which looks at every character in turn: at 870 bytes a line
            # (Traefik's JSON) 4,400 instructions of it against 2,200 for the find and
            # slice; shorter lines split for less than a find costs.
            find = text.find
            i = 0
            while i <= last:
                nl = find("\n", i)
                t = text[i:nl]
                if crlf and t.endswith("\r"):
                    t = t[:-1]
                if len(t) > max_len:
                    out.append(make(source, file, base + i, base + nl + 1, t[:max_len], True))
                else:
                    out.append(make(source, file, base + i, base + nl + 1, t, False))
                i = nl + 1
            pos = base + i
        else:
            parts = text.split("\n")
            parts.pop()  # the empty string after the last newline
            pos = base
            for t in parts:
                end = pos + len(t) + 1
                if crlf and t.endswith("\r"):
                    t = t[:-1]
                if len(t) > max_len:
                    out.append(make(source, file, pos, end, t[:max_len], True))
                else:
                    out.append(make(source, file, pos, end, t, False))
                pos = end
        rest = buf[last + 1 :]
        if len(rest) > max_len:  # an over-long last line: its head now, skip the rest
            out.append(self._make(rest[:max_len], pos, pos + len(rest), True))
            self._skipping = True
            pos += len(rest)
            rest = b""
        self._buf = rest
        self.offset = pos
        return out

    def _feed_bytes(self, buf: bytes) -> list[Line]:
        out: list[Line] = []
        pos = 0
        base = self.offset
        source, file, max_len = self.source, self.file, self.max_len
        n = len(buf)
        while pos < n:
            nl = buf.find(b"\n", pos)
            if self._skipping:
                if nl < 0:
                    pos = n
                    break
                pos = nl + 1
                self._skipping = False
                continue
            if nl < 0:
                if n - pos > max_len:
                    # Emit the head now, skip the rest of this line as it arrives.
                    out.append(self._make(buf[pos : pos + max_len], base + pos, base + n, True))
                    self._skipping = True
                    pos = n
                break
            end = nl + 1
            raw = buf[pos:nl]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            truncated = len(raw) > max_len
            if truncated:
                raw = raw[:max_len]
            out.append(
                _new_line(
                    source, file, base + pos, base + end, raw.decode("utf-8", "replace"), truncated
                )
            )
            pos = end
        self._buf = buf[pos:]
        self.offset = base + pos
        # Lines of an over-long line share its offset; its end is where reading resumes.
        return out

    def _make(self, raw: bytes, start: int, end: int, truncated: bool) -> Line:
        return Line(self.source, self.file, start, end, raw.decode("utf-8", "replace"), truncated)

    @property
    def idle(self) -> bool:
        """Nothing held back: the last byte fed ended a line (or nothing was fed)."""
        return not self._buf and not self._skipping

    @property
    def pending(self) -> int:
        """Bytes held back waiting for a newline."""
        return len(self._buf)

    @property
    def resume_offset(self) -> int:
        """Where a restart should resume: the start of the first incomplete line."""
        return self.offset


def leading_directives(head: bytes, source: str, file: str) -> list[Line]:
    """The complete ``#`` lines (W3C ``#Fields:``...) that open ``head``, a file's first
    bytes, as replay lines: a reader that resumes mid-file passes them on first, so the
    decoder knows the file's columns again."""
    out: list[Line] = []
    pos = 0
    while head[pos : pos + 1] == b"#":
        nl = head.find(b"\n", pos)
        if nl < 0:
            break
        text = head[pos:nl].rstrip(b"\r").decode("utf-8", "replace")
        out.append(Line(source, file, pos, nl + 1, text, replay=True))
        pos = nl + 1
    return out


LineRun = tuple[str, str, str, "array[int]", "array[int]", tuple[int, ...], tuple[int, ...]]
"""Consecutive lines of one file, flattened: source, file, the texts joined by newlines,
offsets, ends, and the indices of the truncated and of the replayed lines."""


def flatten_lines(lines: Sequence[Line]) -> list[LineRun]:
    """Lines as a few flat values per run of one file, to send to another process:
    pickling ``Line`` objects one by one costs about as much as decoding them. A line
    never holds a newline (the splitter cut there), so the texts are joined by one."""
    runs: list[LineRun] = []
    i, n = 0, len(lines)
    while i < n:
        first = lines[i]
        j = i + 1
        while j < n and lines[j].file == first.file and lines[j].source == first.source:
            j += 1
        part = lines[i:j]
        runs.append(
            (
                first.source,
                first.file,
                "\n".join([ln.text for ln in part]),
                array("q", [ln.offset for ln in part]),
                array("q", [ln.end for ln in part]),
                tuple(k for k, ln in enumerate(part) if ln.truncated),
                tuple(k for k, ln in enumerate(part) if ln.replay),
            )
        )
        i = j
    return runs


def unflatten_lines(runs: Sequence[LineRun]) -> list[Line]:
    """The lines of ``flatten_lines``, equal to the originals."""
    new = _new_line
    out: list[Line] = []
    for source, file, texts, offsets, ends, truncated, replay in runs:
        base = len(out)
        out.extend(
            new(source, file, o, e, t, False)
            for o, e, t in zip(offsets, ends, texts.split("\n"), strict=True)
        )
        for k in truncated:
            ln = out[base + k]
            out[base + k] = Line(ln.source, ln.file, ln.offset, ln.end, ln.text, True, ln.replay)
        for k in replay:
            ln = out[base + k]
            out[base + k] = Line(ln.source, ln.file, ln.offset, ln.end, ln.text, ln.truncated, True)
    return out
