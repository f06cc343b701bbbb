"""Knowing a file again: by a fingerprint of its first line, plus device and inode.

The fingerprint is what makes resuming content-based: a renamed file, a ``.gz`` rotated copy
or a copytruncate'd copy still starts with the same first line, so its stored position
applies; a new file after rotation starts with a different line. A file without a complete
first line has no identity yet (there is nothing to read from it either).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

FIRST_LINE_MAX = 4096  # a longer first line is fingerprinted on its first 4 KiB


def fingerprint(first_bytes: bytes) -> str | None:
    """Fingerprint from the first bytes of a file, or None without a complete first line."""
    nl = first_bytes.find(b"\n", 0, FIRST_LINE_MAX)
    if nl < 0:
        if len(first_bytes) < FIRST_LINE_MAX:
            return None
        head = first_bytes[:FIRST_LINE_MAX]
    else:
        head = first_bytes[: nl + 1]
    return hashlib.sha256(head).hexdigest()[:32]


def is_gzip(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def open_log(path: Path) -> io.BufferedIOBase:
    """Open a log for reading, transparently decompressing gzip (by magic bytes)."""
    if is_gzip(path):
        return gzip.open(path, "rb")
    return path.open("rb")


@dataclass(frozen=True, slots=True)
class FileIdentity:
    file_id: str
    dev: int
    inode: int
    size: int  # on-disk size (compressed size for .gz)
    compressed: bool


def identify(path: Path) -> FileIdentity | None:
    """Identity of ``path`` now; None when it has no complete first line yet.

    Raises OSError when the file cannot be read (the caller counts and reports it).
    """
    st = os.stat(path)
    compressed = is_gzip(path)
    with open_log(path) as f:
        head = f.read(FIRST_LINE_MAX)
    fp = fingerprint(head)
    if fp is None:
        return None
    return FileIdentity(fp, st.st_dev, st.st_ino, st.st_size, compressed)
