"""A read gap: log data the tailer knows it missed and can no longer read.

Two ways it happens, both found by ``auditor.tail``:

* **truncation**: a file was truncated (copytruncate) before all of it was read, and no
  rotated copy holding its unread part was found beside it;
* **unfinished archive**: a rotated ``.gz`` ended before its compressed stream did (its
  compressor was killed, or the file is damaged), and no copy holding its rest was found.

The tailer hands a ``ReadGap`` on with the position that steps past it; the store journals
it (kind ``read-gap``) in the same transaction, once per ``ref``, and ``status`` and the
report's data-completeness section show it. Pure: no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

JOURNAL_KIND = "read-gap"


class GapKind(StrEnum):
    TRUNCATION = "truncation"
    UNFINISHED_ARCHIVE = "unfinished-archive"


@dataclass(frozen=True, slots=True)
class ReadGap:
    """What is known about one gap; ``describe()`` says it in a sentence."""

    source: str
    path: str
    file_id: str  # the file's identity (auditor.fileid)
    kind: GapKind
    offset: int  # where reading stopped (for a .gz, in its decompressed text)
    # Bytes seen after ``offset`` and never read: at least this many are lost. None when
    # none were seen: what was written after the last look (if anything) is not known.
    bytes_not_read: int | None
    at_ms: int  # wall-clock time it was found
    cause: str  # how it came about, e.g. "shrank to 0 bytes", "cannot be decompressed (...)"

    @property
    def ref(self) -> str:
        """Names this gap whenever it is found: after a restart the tailer may find the
        same unfinished archive again, and the store then keeps the first record."""
        return f"{self.kind}:{self.file_id}:{self.offset}"

    def describe(self) -> str:
        """One sentence for the journal, ``status`` and the report: paths and offsets, no
        log content."""
        if self.kind is GapKind.TRUNCATION:
            what = f"{self.path} was truncated ({self.cause}); no rotated copy held its unread part"
            after = f"after offset {self.offset:,}"
        else:
            what = (
                f"{self.path}, a compressed archive, ended unfinished ({self.cause});"
                " no copy held its rest"
            )
            after = f"after offset {self.offset:,} of its decompressed text"
        if self.bytes_not_read:
            return f"{what}: at least {self.bytes_not_read:,} bytes {after} were not read"
        return f"{what}: anything {after} was not read (how much, if any, is not known)"
