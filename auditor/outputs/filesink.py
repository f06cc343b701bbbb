"""File output: one JSON object per line, rotated by size, for a shipper to tail.

``findings.json`` is written until the next line would take it past ``max_bytes``; then
it becomes ``findings.json.1`` (the older ones move up to ``.keep``, the oldest is
removed) and a new ``findings.json`` starts. That is the rename-and-create rotation
Vector, Fluent Bit and Filebeat follow by inode. Files are created owner-only (0600), a
missing directory 0700. A line is written whole or not at all: after a failed write
(disk full) the file is cut back to where the line began.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from auditor.outputs.sink import DeliveryError, Item


class FileSink:
    batch_size = 500

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._fd: int | None = None
        self._size = 0

    def send(self, items: Sequence[Item]) -> None:
        for i, item in enumerate(items):
            try:
                self._write(item.body + b"\n")
            except OSError as exc:
                self.close()
                reason = exc.strerror or type(exc).__name__
                raise DeliveryError(f"file {self.path}: {reason}", sent=i) from None

    def _write(self, line: bytes) -> None:
        fd = self._open()
        if self._size > 0 and self._size + len(line) > self.max_bytes:
            self._rotate()
            fd = self._open()
        start = self._size
        try:
            view = memoryview(line)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except OSError:
            os.ftruncate(fd, start)  # never leave half a line for the shipper
            raise
        self._size = start + len(line)

    def _open(self) -> int:
        if self._fd is not None and not self._same_file(self._fd):
            self.close()  # moved or removed by someone else: start a new file at the path
        if self._fd is None:
            if not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._fd, self._size = fd, os.fstat(fd).st_size
        return self._fd

    def _same_file(self, fd: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        own = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)

    def _rotate(self) -> None:
        self.close()
        name = str(self.path)
        for n in range(self.keep - 1, 0, -1):
            older = f"{name}.{n}"
            if os.path.exists(older):
                os.replace(older, f"{name}.{n + 1}")
        os.replace(name, f"{name}.1")

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
