"""The redaction key: 32 random bytes that key every digest of a leaked value.

The key stays next to the database (``audit.db.key``) and never changes, so digests of
the same card number match across runs and distinct counts stay right. Losing it only
means that digests of old and new leaks no longer match. Anyone holding it can confirm a
guessed value against a digest, so it is owner-only like the database.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from auditor.errors import StoreError

log = logging.getLogger(__name__)

KEY_BYTES = 32


def load_or_create_key(path: Path) -> bytes:
    """Read the key at ``path``, creating it (0600, parent dir 0700) on first use.

    Creation is atomic: the bytes are written to a private temporary file that is then
    hard-linked into place, so two processes starting together end up with one key and
    nobody ever reads a half-written file.

    Raises:
        StoreError: the file or its directory cannot be read or created, or the file
            does not hold exactly 32 bytes.
    """
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _create(path)
        return _read(path)
    except StoreError:
        raise
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the redaction key: {_why(exc)}") from None


def _read(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the redaction key: {_why(exc)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"{path}: the redaction key is not a regular file")
        data = os.read(fd, KEY_BYTES + 1)
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the redaction key: {_why(exc)}") from None
    finally:
        os.close(fd)
    if len(data) != KEY_BYTES:
        raise StoreError(
            f"{path}: the redaction key must hold exactly {KEY_BYTES} bytes, found "
            f"{len(data) if len(data) <= KEY_BYTES else 'more'}; restore it from backup or "
            "move it away to start a new one (old digests will no longer match)"
        )
    if st.st_mode & 0o077:
        log.warning(
            "%s: redaction key is readable by group/others (mode %o); chmod 600 it",
            path,
            stat.S_IMODE(st.st_mode),
        )
    return data


def _create(path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails with FileExistsError if another process won
        except FileExistsError:
            pass
        except OSError:
            # no hard links on this file system: exclusive create in place instead
            _create_in_place(path)
        else:
            log.info("%s: created a new redaction key", path)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _create_in_place(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.write(fd, secrets.token_bytes(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    log.info("%s: created a new redaction key", path)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)
