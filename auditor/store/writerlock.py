"""One ingesting process per store: the daemon and ``scan`` hold an exclusive lock on
``<store>.lock`` while they read logs into the store.

Positions commit with the events they cover, but each process reads a file's position when
it starts on the file and then advances its own copy: two processes reading the same log
into one store (a backfill ``scan`` beside the running daemon, two overlapping cron scans)
would each store its lines. With the lock, the second one stops at once with a message
that says who holds the store. The kernel drops an ``flock`` when its holder ends, however
it ends (SIGKILL too), so a lock never outlives its process; the file itself stays, empty
but for the holder's pid, owner-only like the store.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Self

from auditor.errors import StoreError


class StoreBusy(StoreError):
    """Another process is reading logs into this store (exit 1)."""


class WriterLock:
    """The lock on ``<store>.lock``, held until ``release`` (or this process ends).
    Forked decode workers close their copy of the descriptor; the lock stays with the
    process that took it."""

    def __init__(self, store_path: Path) -> None:
        self.store_path = store_path
        self.path = lock_path(store_path)
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        """Take the lock, or raise ``StoreBusy`` naming the holder's pid."""
        try:
            self.path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"{self.store_path}: cannot open the store: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise StoreBusy(
                f"{self.store_path}: {who} is reading logs into this store (the "
                "daemon, or another scan); stop it first, or scan into another store with --db"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"{self.store_path}: cannot lock the store: {exc}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_path(store_path: Path) -> Path:
    """``/var/lib/log-auditor/store.db`` → ``/var/lib/log-auditor/store.db.lock``."""
    return store_path.with_name(store_path.name + ".lock")


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
