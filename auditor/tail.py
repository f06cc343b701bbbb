"""Tailing one source (a file, a glob or a directory) through every kind of rotation.

A file is known by the fingerprint of its first line (``auditor.fileid``) and followed by
its open descriptor, so a rename never loses it. Each check (woken by ``auditor.watch``,
or by the poll timer as a safety net) compares what the paths point at now with what is
open:

* **rename + create, delete + recreate, symlink swap**: the path points at another inode
  (or nothing). The old file stays open and is drained first; it is closed once it has
  been at its end for ``rotate_wait`` seconds (a writer may still hold it). The new file
  is read from its beginning.
* **copytruncate**: same inode, but smaller than what was read, or a different first line.
  The unread part is read from the rotated copy, found by fingerprint beside it
  (``access.log.1``, or ``access.log.1.gz``), then the truncated file from offset 0.
* **a restart**: stored positions are looked up by fingerprint among the matched files
  and their rotated siblings, so a file rotated (even compressed) while the daemon was
  down is finished before its successor.

Only complete lines go on; each chunk carries the position just after its last line, and
the daemon commits that position in the same transaction as the chunk's events.
"""

from __future__ import annotations

import asyncio
import glob
import gzip
import io
import logging
import os
import stat
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiofiles.threadpool

from auditor.config import SourceConfig
from auditor.fileid import FIRST_LINE_MAX, fingerprint
from auditor.lines import LineSplitter
from auditor.model import Line
from auditor.pipeline import Position

log = logging.getLogger(__name__)

CHUNK = 512 * 1024  # bytes per read
CHUNKS_PER_TURN = 8  # reads of one file before the others get a turn
ROTATE_WAIT = 5.0  # seconds a rotated file stays open at its end for late writers
MAX_BACKOFF = 60.0
GZIP_MAGIC = b"\x1f\x8b"
_GZ_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


@dataclass(frozen=True, slots=True)
class Chunk:
    """Complete lines of one file and the position just after the last of them."""

    source: str
    lines: list[Line]
    position: Position
    nbytes: int = 0  # raw bytes these lines took (for queue accounting)
    rotations: int = 0


@dataclass(frozen=True, slots=True)
class SourceState:
    """A change of a source's error state (``None``: healthy again)."""

    source: str
    error: str | None


TailItem = Chunk | SourceState
_SyncFile = io.FileIO | io.BufferedIOBase
Emit = Callable[[TailItem], Awaitable[None]]


class _AsyncReader(Protocol):
    async def read(self, size: int = ..., /) -> bytes: ...


class _Exhausted:
    """The reader of a file known to hold nothing more (a fully read archive)."""

    async def read(self, size: int = -1, /) -> bytes:
        return b""


@dataclass(eq=False)
class _File:
    """One open log file."""

    file_id: str
    path: str
    dev: int
    inode: int
    raw: _SyncFile  # FileIO, or GzipFile for a compressed file
    fileobj: _SyncFile  # what holds the descriptor (the FileIO under a GzipFile)
    reader: _AsyncReader
    splitter: LineSplitter
    compressed: bool
    size: int = 0  # on-disk size last seen (plain files)
    rotated_at: float | None = None  # monotonic time the path stopped pointing here
    eof: bool = False
    last_data: float = 0.0
    emitted: int = -1  # offset of the last position emitted

    @property
    def read_pos(self) -> int:
        return self.splitter.offset + self.splitter.pending

    @property
    def key(self) -> tuple[int, int]:
        return (self.dev, self.inode)

    def close(self) -> None:
        for f in (self.raw, self.fileobj):
            try:
                f.close()
            except OSError:
                pass


class _PathError(Exception):
    """A path that cannot be used now (permission denied, a directory, ...)."""


def source_kind(path: str) -> str:
    """``glob`` when the path has wildcards, ``dir`` for a directory, else ``file``."""
    if any(ch in path for ch in "*?["):
        return "glob"
    if path.endswith("/") or os.path.isdir(path):
        return "dir"
    return "file"


def watch_root(path: str, kind: str) -> tuple[str, bool]:
    """The directory to watch for a source and whether to watch it recursively."""
    if kind == "dir":
        return path.rstrip("/") or "/", True
    if kind == "glob":
        parts = path.split("/")
        fixed: list[str] = []
        for i, part in enumerate(parts):
            if any(ch in part for ch in "*?["):
                recursive = i < len(parts) - 1
                return "/".join(fixed) or "/", recursive
            fixed.append(part)
    return os.path.dirname(path) or ".", False


def rotated_siblings(path: str) -> list[str]:
    """Files beside ``path`` whose name extends it: ``access.log.1``, ``access.log-2026.gz``."""
    d, base = os.path.split(path)
    try:
        names = os.listdir(d or ".")
    except OSError:
        return []
    return [os.path.join(d, n) for n in names if n != base and n.startswith(base)]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _gzip_isize(fd: int, size: int) -> int | None:
    """The uncompressed length mod 2**32 from a gzip trailer (exact for one member)."""
    if size < 18:
        return None
    tail = os.pread(fd, 4, size - 4)
    return int.from_bytes(tail, "little") if len(tail) == 4 else None


def _last_line_end(fd: int, size: int, limit: int) -> int:
    """Offset just after the last newline before ``size`` (0 when none in ``limit`` bytes)."""
    pos = size
    step = 65536
    while pos > 0 and size - pos < limit:
        start = max(0, pos - step)
        block = os.pread(fd, pos - start, start)
        nl = block.rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
        pos = start
    return 0 if pos == 0 else size


@dataclass
class TailStats:
    """What the metrics endpoint shows about a source, updated as it reads."""

    lag_bytes: int = 0
    open_files: int = 0
    gaps: int = 0  # times unread data could not be found (copy missing)
    lines: int = 0
    error: str | None = None


@dataclass
class SourceTailer:
    """Follows one configured source; ``run()`` forever, or ``check()`` once."""

    config: SourceConfig
    emit: Emit
    stored: dict[str, int]  # file_id -> committed offset, from the store at start
    max_line: int = 65536
    poll_interval: float = 1.0
    rotate_wait: float = ROTATE_WAIT
    clock: Callable[[], float] = time.monotonic
    files: dict[str, _File] = field(default_factory=dict)
    stats: TailStats = field(default_factory=TailStats)

    def __post_init__(self) -> None:
        self.name = self.config.name
        self.kind = source_kind(self.config.path)
        self.initial = not self.stored  # first start: config.start applies
        self.known: dict[tuple[int, int], tuple[str, int]] = {}  # closed: key -> (id, size)
        self._wake = asyncio.Event()
        self._retry: dict[str, tuple[float, float]] = {}  # path -> (retry at, delay)
        self._errors: dict[str, str] = {}
        self._waiting: str | None = None
        self._reported: str | None = None
        self._out: list[TailItem] = []  # produced by the worker thread, emitted by the loop
        self._startup = True
        self._link_dirs: set[str] = set()

    # -- the loop ------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def watch_dirs(self) -> dict[str, bool]:
        """Directories whose changes concern this source (dir -> recursive)."""
        root, recursive = watch_root(self.config.path, self.kind)
        dirs = {root: recursive}
        for d in self._link_dirs:
            dirs.setdefault(d, False)
        return dirs

    async def run(self) -> None:
        """Check on every wake-up and at least every ``poll_interval`` seconds."""
        while True:
            self._wake.clear()
            busy = await self.check()
            if busy:
                await asyncio.sleep(0)
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass

    async def check(self, *, final: bool = False) -> bool:
        """One pass: notice rotations and new files, read what is new, emit it.

        Returns True when a file still has data beyond what this turn read. With
        ``final`` (``run --once``), rotated files are closed as soon as they are drained.
        """
        await asyncio.to_thread(self._reconcile)
        await self._flush_out()
        busy = False
        # Rotated files first, oldest first: a file is finished before its successor.
        order = sorted(
            self.files.values(),
            key=lambda f: (f.rotated_at is None, f.rotated_at or 0.0),
        )
        for f in order:
            busy |= await self._read(f)
        self._retire(final)
        await self._flush_out()
        self._update_stats()
        return busy

    async def _flush_out(self) -> None:
        out, self._out = self._out, []
        for item in out:
            await self.emit(item)
        state = self._state()
        if state != self._reported:
            self._reported = state
            self.stats.error = state
            if state is None:
                log.info("source %s: ok", self.name)
            elif state.startswith("waiting"):
                log.warning("source %s: %s", self.name, state)
            else:
                log.error("source %s: %s", self.name, state)
            await self.emit(SourceState(self.name, state))

    def _state(self) -> str | None:
        if self._errors:
            path, msg = min(self._errors.items())
            return f"{path}: {msg}"
        return self._waiting

    # -- reading -------------------------------------------------------------------------

    async def _read(self, f: _File) -> bool:
        for _ in range(CHUNKS_PER_TURN):
            try:
                data = await f.reader.read(CHUNK)
            except (OSError, *_GZ_ERRORS) as exc:
                if f.compressed:
                    # A .gz still being written by the compressor: try again later.
                    log.debug("source %s: %s: %s", self.name, f.path, exc)
                    f.eof = True
                    return False
                self._errors[f.path] = f"read failed: {_reason(exc)}"
                return False
            if not data:
                f.eof = True
                return False
            if f.path in self._errors:
                self._errors.pop(f.path, None)
            f.eof = False
            f.last_data = self.clock()
            lines = f.splitter.feed(data)
            if not f.compressed:
                f.size = max(f.size, f.read_pos)
            self.stats.lines += len(lines)
            await self.emit(Chunk(self.name, lines, self._position(f), len(data)))
        return True

    def _position(self, f: _File) -> Position:
        off = f.splitter.offset
        f.emitted = off
        self.stored[f.file_id] = off
        return Position(f.file_id, self.name, f.path, f.dev, f.inode, off, f.size)

    def _update_stats(self) -> None:
        lag = 0
        for f in self.files.values():
            if not f.compressed:
                lag += max(0, f.size - f.splitter.offset)
        self.stats.lag_bytes = lag
        self.stats.open_files = len(self.files)

    def _retire(self, final: bool) -> None:
        now = self.clock()
        for f in list(self.files.values()):
            if not f.eof:
                continue
            done = f.compressed and f.rotated_at is None  # a .gz never grows
            if f.rotated_at is not None:
                quiet_since = max(f.rotated_at, f.last_data)
                done = final or now - quiet_since >= self.rotate_wait
            if not done:
                continue
            if f.splitter.pending:
                if f.compressed:
                    # A finished archive: its unterminated last line is complete (as `scan`).
                    lines = f.splitter.feed(b"\n")
                    self._out.append(Chunk(self.name, lines, self._position(f), 0))
                else:
                    log.info(
                        "source %s: %s closed with %d bytes of an unterminated last line",
                        self.name,
                        f.path,
                        f.splitter.pending,
                    )
            self._close(f)

    def _close(self, f: _File) -> None:
        try:
            size = os.fstat(f.fileobj.fileno()).st_size
        except (OSError, ValueError):
            size = f.size
        f.close()
        self.files.pop(f.file_id, None)
        self.stored[f.file_id] = f.splitter.offset
        self.known[f.key] = (f.file_id, size)

    # -- reconcile: runs in a worker thread ----------------------------------------------

    def _reconcile(self) -> None:
        now = self.clock()
        found = self._discover(now)
        by_key = {(st.st_dev, st.st_ino): p for p, st in found.items()}
        for f in list(self.files.values()):
            if f.rotated_at is None:
                self._recheck(f, found, by_key, now)
            elif not f.compressed:
                try:
                    f.size = os.fstat(f.fileobj.fileno()).st_size
                except OSError:
                    pass
        open_keys = {f.key for f in self.files.values()}
        for path, st in sorted(found.items(), key=lambda kv: (kv[1].st_mtime, kv[0])):
            key = (st.st_dev, st.st_ino)
            if key in open_keys:
                continue
            k = self.known.get(key)
            if k is not None and k[1] == st.st_size:
                continue
            if not self._due(path, now):
                continue
            try:
                self._open_new(path, now)
            except _PathError as exc:
                self._fail(path, str(exc), now)
            except OSError as exc:
                if not isinstance(exc, FileNotFoundError):
                    self._fail(path, _reason(exc), now)
            else:
                self._ok(path)
        if self._startup:
            self._startup = False
            self._resume_orphans(found, now)
        self.initial = False
        self._link_dirs = {
            os.path.dirname(os.path.realpath(f.path))
            for f in self.files.values()
            if os.path.islink(f.path)
        }

    def _discover(self, now: float) -> dict[str, os.stat_result]:
        """Matched regular files (symlinks followed) -> their stat."""
        path = self.config.path
        self._waiting = None
        if self.kind == "file":
            candidates = [path]
        elif self.kind == "glob":
            candidates = sorted(glob.glob(path, recursive=True))
            if not candidates:
                self._waiting = f"waiting: no file matches {path}"
        else:
            candidates = []
            if not os.path.isdir(path):
                self._waiting = f"waiting: directory {path} does not exist"
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                candidates.extend(os.path.join(root, n) for n in names if not n.startswith("."))
        found: dict[str, os.stat_result] = {}
        for p in candidates:
            try:
                st = os.stat(p)
            except FileNotFoundError:
                self._errors.pop(p, None)
                if self.kind == "file":
                    self._waiting = f"waiting: {p} does not exist"
                continue
            except OSError as exc:
                self._fail(p, _reason(exc), now)
                continue
            if stat.S_ISREG(st.st_mode):
                found[p] = st
                if self._errors.get(p) == "is a directory, expected a file":
                    self._ok(p)
            elif stat.S_ISDIR(st.st_mode) and self.kind == "file":
                self._errors[p] = "is a directory, expected a file"
        for p in list(self._errors):
            if p not in candidates and not os.path.lexists(p):
                self._ok(p)
        return found

    def _recheck(
        self,
        f: _File,
        found: Mapping[str, os.stat_result],
        by_key: Mapping[tuple[int, int], str],
        now: float,
    ) -> None:
        """Is the path still this file, still the same content? Else it rotated."""
        st = found.get(f.path)
        if st is None or (st.st_dev, st.st_ino) != f.key:
            if st is None and self._errors.get(f.path, "").startswith("permission"):
                return  # cannot stat the name any more, but the descriptor still reads
            moved = by_key.get(f.key)
            how = f"renamed to {moved}" if moved else "moved away or deleted"
            old = f.path
            if moved:
                f.path = moved
            self._rotated(f, old, now, how)
            return
        if f.compressed:
            return
        f.size = st.st_size
        if st.st_size < f.read_pos:
            self._truncated(f, now, f"shrank to {st.st_size} bytes")
            return
        try:
            head = os.pread(f.fileobj.fileno(), FIRST_LINE_MAX, 0)
        except OSError:
            return
        fp = fingerprint(head)
        if fp is not None and fp != f.file_id:
            self._truncated(f, now, "its first line changed")

    def _rotated(self, f: _File, old: str, now: float, how: str) -> None:
        log.info("source %s: %s was %s; finishing it first", self.name, old, how)
        f.rotated_at = now
        f.eof = False
        self._out.append(Chunk(self.name, [], self._position(f), 0, rotations=1))

    def _truncated(self, f: _File, now: float, how: str) -> None:
        """copytruncate: finish from the rotated copy, then the file restarts at 0."""
        copy = self._find_copy(f.path, f.file_id, f.read_pos, exclude=f.key)
        f.close()
        del self.files[f.file_id]
        if copy is None:
            unread = max(0, f.size - f.read_pos)
            self.stats.gaps += 1
            log.warning(
                "source %s: %s was truncated (%s) and no rotated copy holding its unread"
                " part was found beside it; up to %d bytes after offset %d were not read",
                self.name,
                f.path,
                how,
                unread,
                f.read_pos,
            )
            self.stored[f.file_id] = f.splitter.offset
            self._out.append(Chunk(self.name, [], self._position(f), 0, rotations=1))
            return
        log.info(
            "source %s: %s was truncated (%s); reading its rest from %s",
            self.name,
            f.path,
            how,
            copy.path,
        )
        copy.splitter = f.splitter
        copy.splitter.file = copy.path
        copy.rotated_at = now
        self.files[copy.file_id] = copy
        self._out.append(Chunk(self.name, [], self._position(copy), 0, rotations=1))

    def _find_copy(
        self, path: str, file_id: str, offset: int, exclude: tuple[int, int]
    ) -> _File | None:
        """A rotated copy of ``file_id`` beside ``path``, opened at ``offset``."""
        for cand in sorted(rotated_siblings(path)):
            try:
                f = self._open(cand, offset)
            except (_PathError, OSError):
                continue
            if f is None:
                continue
            if f.file_id == file_id and f.key != exclude:
                return f
            f.close()
        return None

    def _resume_orphans(self, found: Mapping[str, os.stat_result], now: float) -> None:
        """After a restart: finish files that rotated away while the daemon was down."""
        missing = {fid for fid in self.stored if fid not in self.files}
        if not missing:
            return
        places: set[str] = set()
        for p in found:
            places.update(rotated_siblings(p))
        if self.kind == "file":
            places.update(rotated_siblings(self.config.path))
        open_keys = {f.key for f in self.files.values()}
        for cand in sorted(places, key=_mtime):
            if not missing:
                break
            try:
                f = self._peek(cand)
            except (_PathError, OSError):
                continue
            if f is None:
                continue
            fid, key, size, compressed, fd_obj = f
            fd_obj.close()
            if fid not in missing or key in open_keys:
                continue
            missing.discard(fid)
            offset = self.stored[fid]
            try:
                opened = self._open(cand, offset)
            except (_PathError, OSError):
                continue
            if opened is None:
                continue
            if (not compressed and offset >= size) or (opened.eof and compressed):
                self._close(opened)
                continue
            log.info(
                "source %s: resuming %s (rotated while stopped) at offset %d",
                self.name,
                cand,
                offset,
            )
            opened.rotated_at = now
            self.files[fid] = opened
            open_keys.add(opened.key)
            self._out.append(Chunk(self.name, [], self._position(opened), 0, rotations=1))

    def _open_new(self, path: str, now: float) -> None:
        """A matched file not open yet: resume it, or start it per the source's ``start``."""
        peek = self._peek(path)
        if peek is None:
            return  # no complete first line yet: nothing to read either
        fid, key, size, _, fobj = peek
        fobj.close()
        if fid in self.files:
            self.known[key] = (fid, size)  # a copy of a file being read (copytruncate, gzip)
            return
        stored = self.stored.get(fid)
        new = stored is None
        if stored is not None:
            offset = stored
        elif self.initial and self.config.start == "end":
            offset = -1  # resolved in _open: the end of the last complete line
        else:
            offset = 0
        f = self._open(path, offset)
        if f is None:
            return
        if f.compressed and f.eof:
            self.known[f.key] = (f.file_id, size)
            f.close()
            if new:
                self._out.append(Chunk(self.name, [], self._position(f), 0))
            return
        self.files[f.file_id] = f
        if new:
            if offset != 0:
                log.info(
                    "source %s: %s: starting at its end (offset %d)", self.name, path, f.read_pos
                )
            else:
                log.info("source %s: %s: new file, reading from its beginning", self.name, path)
            self._out.append(Chunk(self.name, [], self._position(f), 0))

    def _peek(self, path: str) -> tuple[str, tuple[int, int], int, bool, _SyncFile] | None:
        """(file_id, key, size, compressed, open file) or None without a first line."""
        raw = open(path, "rb", buffering=0)  # noqa: SIM115 - the caller closes it
        try:
            st = os.fstat(raw.fileno())
            if stat.S_ISDIR(st.st_mode):
                raise _PathError("is a directory")
            head = os.pread(raw.fileno(), FIRST_LINE_MAX, 0)
            compressed = head[:2] == GZIP_MAGIC
            if compressed:
                try:
                    with gzip.GzipFile(fileobj=raw) as gz:
                        head = gz.read(FIRST_LINE_MAX)
                except _GZ_ERRORS:
                    self.known[(st.st_dev, st.st_ino)] = ("", st.st_size)
                    raw.close()
                    return None
            fid = fingerprint(head)
            if fid is None:
                # Remember the size so an unchanged file is not read again on every check.
                self.known[(st.st_dev, st.st_ino)] = ("", st.st_size)
                raw.close()
                return None
        except BaseException:
            raw.close()
            raise
        return fid, (st.st_dev, st.st_ino), st.st_size, compressed, raw

    def _open(self, path: str, offset: int) -> _File | None:
        """Open ``path`` positioned at ``offset`` (-1: at the end of its last line)."""
        raw = open(path, "rb", buffering=0)  # noqa: SIM115 - owned by the _File
        try:
            fd = raw.fileno()
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise _PathError("is a directory")
            head = os.pread(fd, FIRST_LINE_MAX, 0)
            compressed = head[:2] == GZIP_MAGIC
            reader: _SyncFile = raw
            eof = exhausted = False
            if compressed:
                gz = gzip.GzipFile(fileobj=raw)
                try:
                    head = gz.read(FIRST_LINE_MAX)
                    fid = fingerprint(head)
                    if fid is None:
                        raw.close()
                        return None
                    if offset >= 0 and _gzip_isize(fd, st.st_size) == offset % (1 << 32):
                        eof = exhausted = True  # already read to its end (trailer says so)
                    elif offset < 0:
                        offset = _gz_length(gz)
                        eof = True
                    else:
                        gz.seek(offset)
                        eof = gz.tell() < offset
                except _GZ_ERRORS as exc:
                    raw.close()
                    raise _PathError(f"unreadable compressed file ({exc})") from None
                reader = gz
            else:
                fid = fingerprint(head)
                if fid is None:
                    raw.close()
                    return None
                if offset < 0:
                    offset = _last_line_end(fd, st.st_size, 4 * self.max_line)
                os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            raw.close()
            raise
        splitter = LineSplitter(self.name, path, offset, self.max_line)
        f = _File(
            file_id=fid,
            path=path,
            dev=st.st_dev,
            inode=st.st_ino,
            raw=reader,
            fileobj=raw,
            reader=_Exhausted() if exhausted else aiofiles.threadpool.wrap(reader),
            splitter=splitter,
            compressed=compressed,
            size=st.st_size,
            eof=eof,
            last_data=self.clock(),
        )
        return f

    # -- error bookkeeping ---------------------------------------------------------------

    def _due(self, path: str, now: float) -> bool:
        r = self._retry.get(path)
        return r is None or now >= r[0]

    def _fail(self, path: str, msg: str, now: float) -> None:
        _, delay = self._retry.get(path, (0.0, 0.5))
        delay = min(delay * 2, MAX_BACKOFF)
        self._retry[path] = (now + delay, delay)
        self._errors[path] = msg

    def _ok(self, path: str) -> None:
        self._retry.pop(path, None)
        self._errors.pop(path, None)

    def close(self) -> None:
        for f in list(self.files.values()):
            f.close()
        self.files.clear()


def _gz_length(gz: gzip.GzipFile) -> int:
    gz.seek(0)
    n = 0
    while True:
        block = gz.read(CHUNK)
        if not block:
            return n
        n += len(block)


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def lag_by_source(tailers: Iterable[SourceTailer]) -> dict[str, int]:
    return {t.name: t.stats.lag_bytes for t in tailers}
