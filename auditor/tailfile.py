"""One open log file for the tailer: identity, positioning, plain or gzip reading.

A file is opened once and then followed by its descriptor: whatever its name becomes
(renamed, deleted, compressed beside it), reading goes on from the same bytes. Identity is
the fingerprint of the first line (``auditor.fileid``), read through the descriptor, so
it always describes the file actually open. These functions block (they run in a worker
thread); reading itself goes through aiofiles.
"""

from __future__ import annotations

import asyncio
import glob
import gzip
import io
import os
import re
import stat
import zlib
from dataclasses import dataclass, field
from typing import Protocol

import aiofiles.threadpool

from auditor.fileid import FIRST_LINE_MAX, fingerprint
from auditor.lines import LineSplitter, leading_directives
from auditor.model import Line

GZIP_MAGIC = b"\x1f\x8b"
GZ_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)
GZ_BLOCK = 262144  # compressed bytes per pread
Key = tuple[int, int]  # (st_dev, st_ino)


class PathError(Exception):
    """A path that cannot be used now (a directory, an unreadable archive, ...)."""


class AsyncReader(Protocol):
    async def read(self, size: int = ..., /) -> bytes: ...


class _Exhausted:
    """The reader of a file known to hold nothing more (a fully read archive)."""

    async def read(self, size: int = -1, /) -> bytes:
        return b""


class GzipStream:
    """The decompressed bytes of a gzip file as far as its compressed bytes go *now*.

    A ``.gz`` its compressor is still writing ends part-way (through a deflate block, a
    line): ``GzipFile`` raises EOFError there, and drops what its buffered read had
    decompressed before it. Here the end of the bytes so far is no error: ``read``
    returns what they hold (b"" when nothing more, for now) and goes on from there once
    the file grows. ``complete`` tells a stream that has ended (every member's trailer
    read and checked by zlib: CRC and length) from one not finished yet. Damaged bytes
    raise zlib.error. Compressed bytes are read with pread: the descriptor's offset is
    not used.
    """

    def __init__(self, fileobj: io.FileIO, skip: int = 0) -> None:
        self.fileobj = fileobj
        self.skip = skip  # decompressed bytes still to drop: a stream resumed at an offset
        self.pos = 0  # compressed bytes read
        self.produced = 0  # decompressed bytes made, dropped ones included
        self._d = _gunzip()
        self._in = b""  # compressed bytes read, not decompressed yet
        self._error: zlib.error | None = None  # met after bytes a read returned

    @property
    def complete(self) -> bool:
        """True once the stream has ended: its last member's trailer checked, and nothing
        after it on disk (zero padding aside)."""
        if not self._d.eof or self._in.strip(b"\0"):
            return False
        try:
            return os.fstat(self.fileobj.fileno()).st_size <= self.pos
        except (OSError, ValueError):
            return False

    def read(self, size: int = -1, /) -> bytes:
        if self._error is not None:
            raise self._error
        if size < 0:
            size = 1 << 62
        self.advance()
        if self.skip:
            return b""
        out: list[bytes] = []
        n = 0
        try:
            while n < size:
                chunk = self._pull(min(size - n, 1 << 22))
                if chunk is None:
                    break
                if chunk:
                    out.append(chunk)
                    n += len(chunk)
        except zlib.error as exc:
            if not out:
                raise
            self._error = exc  # the bytes before the damage first
        return b"".join(out)

    def advance(self) -> None:
        """Drop the bytes still to be skipped, as far as the file goes now."""
        while self.skip:
            chunk = self._pull(min(self.skip, 1 << 22))
            if chunk is None:
                return
            self.skip -= len(chunk)

    def _pull(self, limit: int) -> bytes | None:
        """Up to ``limit`` decompressed bytes (perhaps none), or None: no more input now."""
        while True:
            if not self._in:
                data = os.pread(self.fileobj.fileno(), GZ_BLOCK, self.pos)
                if not data:
                    return None
                self.pos += len(data)
                self._in = data
            if self._d.eof:  # a member ended: zero padding, or another member
                self._in = self._in.lstrip(b"\0")
                if not self._in:
                    continue
                self._d = _gunzip()
            saved = self._d.copy()
            try:
                chunk = self._d.decompress(self._in, limit)
                rest = b""
            except zlib.error:
                # Damaged: what the bytes before the damage hold comes first (the longest
                # prefix of the input that decompresses); the next pull raises.
                self._d, chunk, rest = _salvage(saved, self._in, limit)
                if not chunk:
                    raise
            self._in = (self._d.unused_data if self._d.eof else self._d.unconsumed_tail) + rest
            self.produced += len(chunk)
            return chunk

    def close(self) -> None:
        """Nothing of its own to close: the descriptor is its ``LogFile``'s."""


def _gunzip() -> zlib._Decompress:
    return zlib.decompressobj(16 + zlib.MAX_WBITS)


def _salvage(d: zlib._Decompress, data: bytes, limit: int) -> tuple[zlib._Decompress, bytes, bytes]:
    """``d`` fed the longest prefix of ``data`` it takes without error: the decompressor
    after it, its output and the rest of ``data`` (from the damage on)."""
    lo, hi = 0, len(data)  # lo: a length that decompresses; hi: one that fails
    best = (d.copy(), b"")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        trial = d.copy()
        try:
            out = trial.decompress(data[:mid], limit)
        except zlib.error:
            hi = mid
        else:
            lo, best = mid, (trial, out)
    return best[0], best[1], data[lo:]


class _InThread:
    """Reads a ``GzipStream`` in a worker thread."""

    def __init__(self, stream: GzipStream) -> None:
        self._stream = stream

    async def read(self, size: int = -1, /) -> bytes:
        return await asyncio.to_thread(self._stream.read, size)


SyncFile = io.FileIO | io.BufferedIOBase | GzipStream


@dataclass(eq=False)
class LogFile:
    """An open log file and where reading of it stands."""

    file_id: str
    path: str
    dev: int
    inode: int
    raw: SyncFile  # FileIO, or GzipStream for a compressed file
    fileobj: io.FileIO  # what holds the descriptor (the FileIO under a GzipStream)
    reader: AsyncReader
    splitter: LineSplitter
    compressed: bool
    size: int = 0  # on-disk size last seen (plain files)
    rotated_at: float | None = None  # monotonic time the path stopped pointing here
    eof: bool = False
    last_data: float = 0.0
    emitted: int = -1  # offset of the last position emitted
    origin: str = ""  # the path it was (or its successor is) read at: rotated files first
    # Directive lines ("#Fields: ...") at the start of a file resumed mid-way: replayed
    # before its first new lines, so a W3C decoder knows the file's columns again.
    preamble: list[Line] = field(default_factory=list)
    exhausted: bool = False  # a compressed file known read to its end when opened
    damaged: str | None = None  # why a compressed file cannot be read on

    def __post_init__(self) -> None:
        if not self.origin:
            self.origin = self.path

    def complete(self) -> bool:
        """False for a compressed file whose stream has not ended (yet): its compressor
        is still writing it, or stopped before its end. Its last line may be cut."""
        if not self.compressed or self.exhausted:
            return True
        return isinstance(self.raw, GzipStream) and self.raw.complete

    @property
    def read_pos(self) -> int:
        return self.splitter.offset + self.splitter.pending

    @property
    def key(self) -> Key:
        return (self.dev, self.inode)

    def fstat_size(self) -> int:
        try:
            return os.fstat(self.fileobj.fileno()).st_size
        except (OSError, ValueError):
            return self.size

    def head_fingerprint(self) -> str | None:
        """The fingerprint of the first line now (plain files); see ``head_fingerprint``."""
        return head_fingerprint(self.fileobj)

    def replaced(self) -> bool:
        """True when this (plain) file no longer starts with the line it was known by."""
        fp = self.head_fingerprint()
        return fp != self.file_id and fp != ""

    def current_name(self) -> str | None:
        return current_name(self.fileobj)

    def close(self) -> None:
        for f in (self.raw, self.fileobj):
            try:
                f.close()
            except OSError:
                pass


@dataclass(eq=False)
class Blank:
    """A matched file without a complete first line yet, held open by its descriptor.

    It has no identity and nothing to read, but it is followed like a ``LogFile``: the
    writer that holds it may fill it after it was renamed or deleted (an empty file
    rotated away, a file copytruncated and then renamed), and what it then holds is read.
    Filled as a gzip file (the ``.gz`` a compressor had just created, found empty), its
    first line is that of its decompressed bytes: the line of the file it copies.
    """

    path: str
    fileobj: io.FileIO
    dev: int
    inode: int
    size: int = 0  # bytes of an unterminated first line, as last seen
    rotated_at: float | None = None  # monotonic time the path stopped pointing here
    last_data: float = 0.0  # monotonic time its size last changed
    origin: str = ""  # the path it was at

    def __post_init__(self) -> None:
        if not self.origin:
            self.origin = self.path

    @property
    def key(self) -> Key:
        return (self.dev, self.inode)

    def fstat(self) -> os.stat_result | None:
        try:
            return os.fstat(self.fileobj.fileno())
        except (OSError, ValueError):
            return None

    def head_fingerprint(self) -> str | None:
        return head_fingerprint(self.fileobj)

    def current_name(self) -> str | None:
        return current_name(self.fileobj)

    def close(self) -> None:
        try:
            self.fileobj.close()
        except OSError:
            pass


@dataclass(eq=False)
class Watched:
    """A rotated file followed by its name only, without a descriptor.

    A file let go (read to its end, quiet, its writer perhaps gone for good), or the twin
    of an open file (same first line, length and modification time: which of the two its
    writer holds cannot be told until one grows). Each check stats it; once it grows it
    is opened again.
    """

    path: str  # its name when last seen
    dev: int
    inode: int
    file_id: str | None  # None: without a complete first line when let go
    size: int  # bytes when last seen: more means it was written to
    origin: str  # the path it was rotated from
    rotated_at: float
    last_data: float  # monotonic time it last grew (or was found, for a twin)

    @property
    def key(self) -> Key:
        return (self.dev, self.inode)


@dataclass(eq=False)
class Owed:
    """The unterminated last line a rotated plain file was closed with, its writer gone.

    Nothing tells that such a line is whole, but a finished compressed copy of the file
    does (its stream ended after it: as ``scan`` reads it). That copy is written after
    the file was closed (a compressor slow to start, or logrotate's ``delaycompress`` at
    the next rotation) or was finished before (the compressor faster than
    ``rotate_wait``): it is looked for beside ``origin`` and read from ``offset``.
    """

    origin: str  # the path the file was rotated from: its copies are named after it
    offset: int  # where the line starts, in the file's (decompressed) text
    since: float  # monotonic time the current look-out began
    renewed: bool = False  # looked out for again after the next rotation of ``origin``
    looked: dict[str, tuple[Key, int]] = field(default_factory=dict)  # path -> key, size

    def changed(self, path: str, st: os.stat_result) -> bool:
        """True when ``path`` was not looked at yet as it is now; notes it as looked at."""
        now = ((st.st_dev, st.st_ino), st.st_size)
        if self.looked.get(path) == now:
            return False
        self.looked[path] = now
        return True


def locate(w: Watched) -> tuple[str, os.stat_result] | None:
    """Where ``w``'s file is now (its name, or another beside it: renamed again), or None
    when it is gone (deleted, or moved out of its directory)."""
    try:
        st = os.stat(w.path)
        if (st.st_dev, st.st_ino) == w.key:
            return w.path, st
    except OSError:
        pass
    d = os.path.dirname(w.path) or "."
    try:
        with os.scandir(d) as it:
            names = [e.path for e in it if e.inode() == w.inode]
    except OSError:
        return None
    for p in names:
        try:
            st = os.stat(p)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == w.key and stat.S_ISREG(st.st_mode):
            return p, st
    return None


def same_bytes(a: io.FileIO, b: io.FileIO, end: int, n: int = 4096) -> bool:
    """True when two open files hold the same ``n`` bytes just before offset ``end``."""
    start = max(0, end - n)
    try:
        x = os.pread(a.fileno(), end - start, start)
        return len(x) == end - start and x == os.pread(b.fileno(), end - start, start)
    except (OSError, ValueError):
        return False


def hold(path: str) -> Blank:
    """Open ``path`` as a ``Blank``; raises OSError, or PathError for a directory."""
    raw = open(path, "rb", buffering=0)  # noqa: SIM115 - owned by the Blank
    return _blank(raw, path)


def hold_again(f: LogFile) -> Blank:
    """The file open as ``f``, on a descriptor of its own, as a ``Blank`` (it restarts)."""
    return _blank(io.FileIO(os.dup(f.fileobj.fileno()), "rb"), f.path)


def _blank(raw: io.FileIO, path: str) -> Blank:
    try:
        st = os.fstat(raw.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise PathError("is a directory")
    except BaseException:
        raw.close()
        raise
    return Blank(path, raw, st.st_dev, st.st_ino, st.st_size)


def head_fingerprint(fileobj: io.FileIO) -> str | None:
    """The fingerprint of an open file's first line now, decompressed for a gzip file
    (as ``peek`` and ``open_at`` identify it): a ``.gz`` copy is known as its original.

    None when there is no complete first line (yet, or any more: it was truncated; an
    archive still without one, or unreadable); ``""`` when it cannot be read now (an I/O
    error: nothing can be concluded).
    """
    try:
        fd = fileobj.fileno()
        head = os.pread(fd, FIRST_LINE_MAX, 0)
        if head[:2] == GZIP_MAGIC:
            head = gzip_head(fd)
        return fingerprint(head)
    except (OSError, ValueError):
        return ""


def gzip_head(fd: int, block: int = 16384, *, strict: bool = False) -> bytes:
    """The first decompressed bytes of an open gzip file, up to its first newline or
    ``FIRST_LINE_MAX`` bytes, read with pread (the descriptor's offset is not moved).

    An archive still being written gives what its bytes so far hold; a corrupt one, b""
    (``strict``: zlib.error).
    """
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = b""
    pos = 0
    data = b""
    try:
        while len(out) < FIRST_LINE_MAX and b"\n" not in out and not d.eof:
            if not data:
                data = os.pread(fd, block, pos)
                if not data:
                    break
                pos += len(data)
            # A little at a time: what comes before a damaged part is still read.
            out += d.decompress(data, min(512, FIRST_LINE_MAX - len(out)))
            data = d.unconsumed_tail
    except zlib.error:
        if strict:
            raise
        return b""
    return out


def current_name(fileobj: io.FileIO) -> str | None:
    """Where an open file is now, from /proc (Linux); ``... (deleted)`` once unlinked."""
    try:
        return os.readlink(f"/proc/self/fd/{fileobj.fileno()}")
    except (OSError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Peek:
    """What a file is, without keeping it open."""

    file_id: str | None  # None: no complete first line yet (or an archive being written)
    key: Key
    size: int
    mtime: float
    compressed: bool
    length: int  # bytes of content: the size, or a gzip's uncompressed size (mod 2**32)


def peek(path: str) -> Peek:
    """Identify ``path``; raises OSError, or PathError for a directory."""
    with open(path, "rb", buffering=0) as raw:
        st = os.fstat(raw.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise PathError("is a directory")
        head = os.pread(raw.fileno(), FIRST_LINE_MAX, 0)
        compressed = head[:2] == GZIP_MAGIC
        length = st.st_size
        if compressed:
            # Its isize: what its trailer would say (an archive not finished yet has none).
            length = gzip_isize(raw.fileno(), st.st_size) or 0
            head = gzip_head(raw.fileno())
    key = (st.st_dev, st.st_ino)
    return Peek(fingerprint(head), key, st.st_size, st.st_mtime, compressed, length)


def open_at(path: str, source: str, offset: int, max_line: int, now: float) -> LogFile | None:
    """Open ``path`` at ``offset`` (-1: just after its last complete line).

    None when the file has no complete first line yet. A ``.gz`` is positioned in its
    decompressed bytes; when its trailer says it holds exactly ``offset`` bytes it is not
    decompressed at all (a rotated archive already read).
    """
    raw = open(path, "rb", buffering=0)  # noqa: SIM115 - owned by the LogFile
    return _open_raw(raw, path, source, offset, max_line, now)


def open_held(b: Blank, source: str, offset: int, max_line: int, now: float) -> LogFile | None:
    """The file held as ``b``, on a descriptor of its own, identified afresh.

    Its name may be gone, but the descriptor still reads what it holds now. None when
    that has no complete first line (yet).
    """
    raw = io.FileIO(os.dup(b.fileobj.fileno()), "rb")
    return _open_raw(raw, b.path, source, offset, max_line, now)


def _open_raw(
    raw: io.FileIO, path: str, source: str, offset: int, max_line: int, now: float
) -> LogFile | None:
    preamble: list[Line] = []
    try:
        fd = raw.fileno()
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise PathError("is a directory")
        head = os.pread(fd, FIRST_LINE_MAX, 0)
        compressed = head[:2] == GZIP_MAGIC
        reader: SyncFile = raw
        eof = exhausted = False
        if compressed:
            # Positioned in its decompressed bytes. An archive its compressor is still
            # writing may not reach ``offset`` yet: the rest is skipped as it comes.
            try:
                fid = fingerprint(gzip_head(fd, strict=True))
                if fid is None:
                    raw.close()
                    return None
                gz = GzipStream(raw)
                if offset >= 0 and gzip_isize(fd, st.st_size) == offset % (1 << 32):
                    eof = exhausted = True
                elif offset < 0:
                    offset, gz = _gz_end(raw)
                    eof = gz.complete
                else:
                    gz.skip = offset
                    gz.advance()
                    eof = gz.skip > 0 and gz.complete  # it ended before ``offset``
            except GZ_ERRORS as exc:
                raw.close()
                raise PathError(f"unreadable compressed file ({exc})") from None
            reader = gz
        else:
            fid = fingerprint(head)
            if fid is None:
                raw.close()
                return None
            if offset < 0:
                offset = last_line_end(fd, st.st_size, 4 * max_line)
            if offset > 0 and head[:1] == b"#":
                preamble = directives(fd, path, source, offset)
            os.lseek(fd, offset, os.SEEK_SET)
    except BaseException:
        raw.close()
        raise
    return LogFile(
        file_id=fid,
        path=path,
        dev=st.st_dev,
        inode=st.st_ino,
        raw=reader,
        fileobj=raw,
        reader=_reader(reader, exhausted),
        splitter=LineSplitter(source, path, offset, max_line),
        compressed=compressed,
        size=st.st_size,
        eof=eof,
        last_data=now,
        preamble=preamble,
        exhausted=exhausted,
    )


def _reader(sync: SyncFile, exhausted: bool) -> AsyncReader:
    if exhausted:
        return _Exhausted()
    if isinstance(sync, GzipStream):
        return _InThread(sync)
    return aiofiles.threadpool.wrap(sync)  # type: ignore[no-any-return]


PREAMBLE_MAX = 65536


def directives(fd: int, path: str, source: str, before: int) -> list[Line]:
    """The ``#`` lines that open the file, before offset ``before`` (at most 64 KiB)."""
    return leading_directives(os.pread(fd, min(before, PREAMBLE_MAX), 0), source, path)


def gzip_isize(fd: int, size: int) -> int | None:
    """The uncompressed length mod 2**32 from a gzip trailer (exact for one member)."""
    if size < 18:
        return None
    tail = os.pread(fd, 4, size - 4)
    return int.from_bytes(tail, "little") if len(tail) == 4 else None


def last_line_end(fd: int, size: int, limit: int) -> int:
    """Offset just after the last newline before ``size`` (searching ``limit`` bytes back)."""
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


def _gz_end(raw: io.FileIO) -> tuple[int, GzipStream]:
    """Where a gzip file ends now, and a stream positioned there: its length once its
    stream has ended, else just after its last complete line so far (the rest of that
    line is read as it comes)."""
    gz = GzipStream(raw)
    n = last = 0
    while block := gz.read(1 << 20):
        nl = block.rfind(b"\n")
        if nl >= 0:
            last = n + nl + 1
        n += len(block)
    if gz.complete:
        return n, gz
    return last, GzipStream(raw, skip=last)


NOT_A_FILE = "is a directory, expected a file"


@dataclass
class Discovery:
    """What a source's path matches now."""

    found: dict[str, os.stat_result]  # regular files (symlinks followed) -> stat
    candidates: set[str]  # every path looked at
    failed: dict[str, str]  # path -> why it cannot be looked at (permission denied...)
    missing: set[str]  # vanished between listing and stat, or not there (a file source)
    not_files: set[str]  # a file source's path that is a directory
    waiting: str | None  # why nothing can be read yet, for status


def discover(path: str, kind: str) -> Discovery:
    """List what ``path`` (a file, a glob or a directory, see ``source_kind``) matches."""
    waiting: str | None = None
    failed: dict[str, str] = {}
    if kind == "file":
        candidates = [path]
    elif kind == "glob":
        candidates = sorted(glob.glob(path, recursive=True))
        if not candidates:
            waiting = f"waiting: no file matches {path}"
    else:
        candidates = []
        if not os.path.isdir(path):
            waiting = f"waiting: directory {path} does not exist"

        def walk_error(exc: OSError) -> None:
            if not isinstance(exc, FileNotFoundError):
                failed[exc.filename or path] = reason(exc)

        for root, dirs, names in os.walk(path, onerror=walk_error):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            candidates.extend(os.path.join(root, n) for n in names if not n.startswith("."))
    d = Discovery({}, set(candidates), failed, set(), set(), waiting)
    for p in candidates:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            d.missing.add(p)
            if kind == "file":
                d.waiting = f"waiting: {p} does not exist"
            continue
        except OSError as exc:
            failed[p] = reason(exc)
            continue
        if stat.S_ISREG(st.st_mode):
            d.found[p] = st
        elif stat.S_ISDIR(st.st_mode) and kind == "file":
            d.not_files.add(p)
    return d


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
                return "/".join(fixed) or "/", i < len(parts) - 1
            fixed.append(part)
    return os.path.dirname(path) or ".", False


def rotated_siblings(path: str) -> list[str]:
    """Files beside ``path`` whose name extends it: ``access.log.1``, ``access.log-2026.gz``."""
    d, base = os.path.split(path)
    try:
        names = os.listdir(d or ".")
    except OSError:
        return []
    return sorted(os.path.join(d, n) for n in names if n != base and n.startswith(base))


# After the log's name: a separator and a digit (``.1``, ``.1.gz``, ``-20261120``,
# ``.20261120-120000``, ``.4-moved``), or a bare compression suffix.
_ROTATED_NAME = re.compile(r"[._-][0-9]|\.gz$")


def rotated_name(path: str, sibling: str) -> bool:
    """True when ``sibling``'s name reads as a rotated ``path`` (a number or a date after
    it), not as another file named after it (``access.log.bak``, ``access.log-notes.txt``).
    """
    base = os.path.basename(path)
    name = os.path.basename(sibling)
    return name.startswith(base) and _ROTATED_NAME.match(name, len(base)) is not None


def reason(exc: BaseException) -> str:
    """A short, lower-case reason for an OS error, for stderr and ``status``."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
