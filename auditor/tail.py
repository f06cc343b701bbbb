"""Tailing one source (a file, a glob or a directory) through every kind of rotation.

A file is known by the fingerprint of its first line (``auditor.fileid``) and followed by
its open descriptor (``auditor.tailfile``), so a rename never loses it. Each check (woken
by ``auditor.watch``, or by the poll timer as a safety net) compares what the paths point
at now with what is open:

* **rename + create, delete + recreate, symlink swap**: the path points at another inode
  (or nothing). The old file stays open and is drained first; it is closed once it has
  been at its end for ``rotate_wait`` seconds (a writer may still hold it) and the path
  holds a file with lines (until then its writer may not have moved on: copytruncate
  never tells it to; a deleted file is not kept for that). The new file
  is read from its beginning. A file created *and* rotated away between two checks is
  found beside the path (written since the last check, unknown first line, a rotated
  name: ``access.log.1``, ``access.log-20261120``, not ``access.log.bak``) and read
  too; so is one created and rotated away while the path did not exist.
* **a writer gone for good** (nginx reopened its logs on a quiet server, a copytruncate
  copy, a stopped application): a rotated file whose path holds no line yet is closed
  once it has been quiet at its end for ``idle_close`` seconds, and followed by its name
  (``tailfile.Watched``: a stat per check); if it grows it is opened again where
  reading stood, and finished before its successor.
* **twins** (``cp -p``: two files with one first line, length and time), neither seen
  before: one is read, the other followed by name; if the other one grows and the one
  read does not, reading goes on in it.
* **copytruncate**: same inode, but smaller than what was read, or a different first line.
  The unread part is read from the rotated copy, found by fingerprint beside it
  (``access.log.1``, or ``access.log.1.gz``), then the truncated file from offset 0.
  Without a copy, a read gap (``auditor.readgap``) goes with the file's position.
  Truncated, refilled *and* renamed (or deleted) between two checks: the copy first, then
  what the open descriptor holds now, as the new file it is. Of several copies with the
  same first line (logrotate's ``copy``, a ``.gz`` twin), the longest is read.
* **a file without a complete first line** (just created, just truncated) has no
  identity yet, but it is held open all the same (``tailfile.Blank``): the writer may
  fill it after it was renamed or deleted (copytruncate, then rename before the next
  write; an empty file rotated away), and it is read from 0 once it has a first line,
  wherever it is. Written since the last check yet still without a first line, it may
  have been filled and copytruncated in between: its copy is looked for beside it.
* **a restart**: stored positions are looked up by fingerprint among the matched files
  and their rotated siblings, so a file rotated (even compressed) while the daemon was
  down is finished before its successor.
* **a ``.gz`` still being written** (found while its compressor runs): it is read as far
  as its bytes go (``tailfile.GzipStream``; a position is an offset in its decompressed
  text) and kept open until its stream has ended (trailer checked): only then is an
  unterminated last line complete. One that stops growing for ``idle_close`` seconds
  before its end (its compressor was killed), or is damaged, is closed with a warning,
  its cut line not emitted; its rest is read from a copy beside it if there is one (the
  input a killed compressor leaves), else a read gap goes with its position.
* **an unterminated last line** of a rotated file closed when its writer moved on is
  not emitted (nothing tells it is whole), but it is owed (``tailfile.Owed``): a
  compressed copy of the file beside the path it came from, written before or after
  (a compressor slow to start; ``delaycompress``, at the next rotation), is read from
  that line, which is complete once the copy's stream has ended.

Only complete lines go on; each chunk carries the position just after its last line, and
the daemon commits that position in the same transaction as the chunk's events.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from auditor.config import SourceConfig
from auditor.model import Line
from auditor.pipeline import Position
from auditor.readgap import GapKind, ReadGap
from auditor.tailfile import (
    GZ_ERRORS,
    NOT_A_FILE,
    Blank,
    Key,
    LogFile,
    Owed,
    PathError,
    Peek,
    Watched,
    discover,
    hold,
    hold_again,
    locate,
    open_at,
    open_held,
    peek,
    reason,
    rotated_name,
    rotated_siblings,
    same_bytes,
    source_kind,
    watch_root,
)

log = logging.getLogger(__name__)

CHUNK = 512 * 1024  # bytes per read
CHUNKS_PER_TURN = 8  # reads of one file before the others get a turn
ROTATE_WAIT = 5.0  # seconds a rotated file stays open at its end, for late writers
MAX_BACKOFF = 60.0
MTIME_SLACK = 0.1  # file-system timestamps lag the wall clock by up to a tick
RESUME_MARGIN = 10.0  # seconds before the last commit a missed file may have been written
MAX_BLANKS = 64  # files without a first line held open per source (a descriptor each)
IDLE_CLOSE = 60.0  # seconds a rotated file its writer may hold stays open, quiet at its end
MAX_WATCHED = 256  # rotated files followed by their name only, per source (a stat each)

_NO_END = "its compressed stream has no end"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Chunk:
    """Complete lines of one file and the position just after the last of them."""

    source: str
    lines: list[Line]
    position: Position
    nbytes: int = 0  # raw bytes these lines took (for queue accounting)
    rotations: int = 0
    # Data of the file found lost before it was read: it travels with the position that
    # steps past it, so the two commit together (neither without the other).
    gaps: tuple[ReadGap, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceState:
    """A change of a source's error state (``None``: healthy again)."""

    source: str
    error: str | None


TailItem = Chunk | SourceState
Emit = Callable[[TailItem], Awaitable[None]]


@dataclass
class TailStats:
    """What the metrics endpoint and STATUS= show about a source, updated as it reads."""

    lag_bytes: int = 0
    open_files: int = 0
    # truncations whose unread part could not be found, and compressed files that ended
    # unfinished (damaged, or their compressor killed) with no copy holding their rest
    gaps: int = 0
    lines: int = 0
    error: str | None = None


@dataclass
class SourceTailer:
    """Follows one configured source; ``run()`` forever, or ``check()`` once."""

    config: SourceConfig
    emit: Emit
    stored: dict[str, int]  # file_id -> offset; the committed ones at start, then emitted
    max_line: int = 65536
    poll_interval: float = 1.0
    rotate_wait: float = ROTATE_WAIT
    idle_close: float = IDLE_CLOSE
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time  # when a read gap was found
    # When the store last saw this source (wall-clock seconds); None on its first start.
    # Absent (the default), a first start is one without stored positions.
    last_seen: float | None = None
    first_start: bool | None = None
    on_watch_change: Callable[[], None] | None = None  # watch_dirs() changed
    files: dict[str, LogFile] = field(default_factory=dict)
    stats: TailStats = field(default_factory=TailStats)

    def __post_init__(self) -> None:
        self.name = self.config.name
        self.kind = source_kind(self.config.path)
        # First start: config.start applies to the files there now.
        self.initial = not self.stored if self.first_start is None else self.first_start
        self.known: dict[Key, tuple[str, int]] = {}  # closed or skipped: key -> (id, size)
        self.blanks: dict[Key, Blank] = {}  # held open until they have a first line
        self.watched: dict[Key, Watched] = {}  # followed by name: let go, or twins
        self.owed: dict[str, Owed] = {}  # file_id -> an unterminated last line left
        self._wake = asyncio.Event()
        self._retry: dict[str, tuple[float, float]] = {}  # path -> (retry at, delay)
        self._errors: dict[str, str] = {}
        self._waiting: str | None = None
        self._reported: str | None = None
        self._out: list[TailItem] = []  # made in the worker thread, emitted by the loop
        self._startup = True
        self._last_wall: float | None = None
        self._rotated_paths: set[str] = set()
        self._link_dirs: set[str] = set()
        self._unlisted: set[str] = set()  # paths the last listing could not look at
        self._absent = False  # a file source's path did not exist at the last check
        self._jobs: set[asyncio.Future[Any]] = set()  # worker-thread work in flight
        self._close_pending = False  # close() came while some was: the last one closes

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
            if await self.check():
                await asyncio.sleep(0)
                continue
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel that
            # comes in the loop turn of a wake-up (gh-86296), and the stop then waits forever.
            try:
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def check(self, *, final: bool = False) -> bool:
        """One pass: notice rotations and new files, read what is new, emit it.

        Returns True when a file still has data beyond what this turn read. With
        ``final`` (``run --once``), rotated files are closed as soon as they are drained.
        """
        links = self._link_dirs
        await self._off_loop(asyncio.to_thread(self._reconcile))
        if self._link_dirs != links and self.on_watch_change is not None:
            self.on_watch_change()
        await self._flush_out()
        busy = False
        # Rotated files first, oldest first: a file is finished before its successor
        # (the file now at the path it was read at) is read.
        order = sorted(self.files.values(), key=lambda f: (f.rotated_at is None, f.rotated_at))
        unfinished: set[str] = set()
        for f in order:
            if f.origin in unfinished:
                busy = True
                continue
            more = await self._read(f)
            busy |= more
            if more:
                unfinished.add(f.origin)
        self._retire(final)
        await self._flush_out()
        self._update_stats()
        return busy

    async def _off_loop(self, work: Awaitable[T]) -> T:
        """Await ``work``, done in a worker thread, which ``close`` then waits for.

        A check cancelled mid-way (stop, reload) leaves its thread running: closing the
        files under it let ``_reconcile`` open a file again that nobody closed, or a read
        use a descriptor number already given to another file.
        """
        job = asyncio.ensure_future(work)
        self._jobs.add(job)
        job.add_done_callback(self._job_done)
        return await asyncio.shield(job)

    def _job_done(self, job: asyncio.Future[Any]) -> None:
        self._jobs.discard(job)
        if not job.cancelled():
            job.exception()  # seen: its awaiter may have been cancelled meanwhile
        if self._close_pending and not self._jobs:
            self._close_now()

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

    async def _read(self, f: LogFile) -> bool:
        # A file still at its path may be truncated (copytruncate) at any moment, also
        # between the check and this read: the first line is verified before and after
        # each read, and a chunk read across a truncation is dropped (the next check
        # reads that part from the rotated copy).
        watch = not f.compressed and f.rotated_at is None
        if watch and f.replaced():
            return True
        for _ in range(CHUNKS_PER_TURN):
            try:
                data = await self._off_loop(f.reader.read(CHUNK))
            except (OSError, *GZ_ERRORS) as exc:
                if f.compressed:
                    # Damaged (an archive still being written reads as far as it goes,
                    # without error): nothing more can be read from it.
                    if not isinstance(exc, OSError):
                        f.damaged = f"cannot be decompressed ({exc})"
                    log.debug("source %s: %s: %s", self.name, f.path, exc)
                    f.eof = True
                    return False
                self._errors[f.path] = f"read failed: {reason(exc)}"
                return False
            if not data:
                f.eof = True
                return False
            if watch and f.replaced():
                return True
            self._errors.pop(f.path, None)
            f.eof = False
            f.last_data = self.clock()
            lines = f.splitter.feed(data)
            if f.preamble:  # a file resumed mid-way: its header lines go first, once
                lines = f.preamble + lines
                f.preamble = []
            if not f.compressed:
                f.size = max(f.size, f.read_pos)
            self.stats.lines += len(lines)
            await self.emit(Chunk(self.name, lines, self._position(f), len(data)))
        return True

    def _position(self, f: LogFile) -> Position:
        off = f.splitter.offset
        f.emitted = off
        self.stored[f.file_id] = off
        return Position(f.file_id, self.name, f.path, f.dev, f.inode, off, f.size)

    def live_lag(self) -> int:
        """Bytes in the open files beyond what was read, now (an fstat per open file)."""
        return sum(
            max(0, f.fstat_size() - f.splitter.offset)
            for f in list(self.files.values())
            if not f.compressed
        )

    def _update_stats(self) -> None:
        self.stats.lag_bytes = sum(
            max(0, f.size - f.splitter.offset) for f in self.files.values() if not f.compressed
        )
        self.stats.open_files = len(self.files) + len(self.blanks)

    def _retire(self, final: bool) -> None:
        now = self.clock()
        for f in list(self.files.values()):
            if not f.eof:
                continue
            if not f.complete():
                # A compressed file whose stream has not ended: its compressor may still
                # be writing it, however long that takes; its last line may be cut.
                if self._unfinished_archive(f, now, final):
                    self._close(f)
                    if not self._finish_from_copy(f, now):
                        self._archive_gap(f)  # its unread rest is nowhere
                continue
            if f.rotated_at is None:
                if not f.compressed:
                    continue  # followed for as long as the path names it
            elif not final:
                idle = now - max(f.rotated_at, f.last_data)
                if idle < self.rotate_wait:
                    continue
                if not f.compressed and self._writer_may_be_in(f.origin, f.fileobj):
                    if idle >= self.idle_close:
                        self._let_go(f, idle)
                    continue
            if f.splitter.pending:
                if f.compressed:
                    # A finished archive: its unterminated last line is complete (as `scan`).
                    lines = f.splitter.feed(b"\n")
                    self._out.append(Chunk(self.name, lines, self._position(f), 0))
                else:
                    log.info(
                        "source %s: %s closed with %d bytes of an unterminated last line;"
                        " a finished compressed copy of it is looked for",
                        self.name,
                        f.path,
                        f.splitter.pending,
                    )
            self._close(f)
            if f.splitter.pending and not f.compressed:
                self._owe(f.file_id, f.origin, f.splitter.offset, now)

    def _unfinished_archive(self, f: LogFile, now: float, final: bool) -> bool:
        """True when a compressed file read as far as its stream goes, not ended, is to be
        closed: damaged, or unchanged for ``idle_close`` seconds (its compressor stopped
        or was killed), or a final check. A warning tells what of it was not read; its
        cut last line is not emitted."""
        if f.damaged is None and not final:
            size = f.fstat_size()
            if size != f.size:
                f.size, f.last_data = size, now  # still being written
                return False
            if now - f.last_data < self.idle_close:
                return False
        why = f.damaged or (
            f"incomplete (its compressed stream has no end; unchanged for"
            f" {now - f.last_data:.0f} s)"
        )
        log.warning(
            "source %s: %s: %s; closed after offset %d of its decompressed text%s",
            self.name,
            f.path,
            why,
            f.splitter.offset,
            f" ({f.splitter.pending} bytes of a cut line not read)" if f.splitter.pending else "",
        )
        return True

    def _archive_gap(self, f: LogFile) -> None:
        """Record what an unfinished archive took with it: its cut last line is known, the
        rest of its text is not."""
        cause = f.damaged or _NO_END
        gap = self._gap(f, f.path, GapKind.UNFINISHED_ARCHIVE, cause, f.splitter.pending)
        self._out.append(Chunk(self.name, [], self._position(f), 0, gaps=(gap,)))

    def _gap(self, f: LogFile, path: str, kind: GapKind, cause: str, unread: int) -> ReadGap:
        """Count and log a read gap of ``f`` (at ``path``) after its last complete line;
        ``unread``: the bytes known to follow that line and lost (0: none known)."""
        self.stats.gaps += 1
        gap = ReadGap(
            source=self.name,
            path=path,
            file_id=f.file_id,
            kind=kind,
            offset=f.splitter.offset,
            bytes_not_read=unread if unread > 0 else None,
            at_ms=int(self.wall_clock() * 1000),
            cause=cause,
        )
        log.warning("source %s: %s", self.name, gap.describe())
        return gap

    def _finish_from_copy(self, f: LogFile, now: float) -> bool:
        """After an unfinished archive: its rest from a copy beside it, if there is one (the
        file a killed compressor left), read on from where the archive stopped. False when
        there is none."""
        copy = self._find_copy(f.origin, f.file_id, f.read_pos, exclude=f.key, now=now)
        if copy is None or copy.eof:
            if copy is not None:
                copy.close()
            return False
        log.info("source %s: reading the rest of %s from %s", self.name, f.path, copy.path)
        copy.splitter = f.splitter  # the same text: a partial line carries over
        copy.splitter.file = copy.path
        copy.rotated_at = now if f.rotated_at is None else f.rotated_at
        copy.origin = f.origin
        self.files[copy.file_id] = copy
        self._out.append(Chunk(self.name, [], self._position(copy), 0))
        return True

    def _let_go(self, f: LogFile, idle: float) -> None:
        """Close a quiet rotated file its writer may still hold; its name is followed.

        Its writer may be gone for good (nginx reopened its logs on a quiet server; the
        application stopped): a descriptor held until a restart. If it grows, it is
        opened again at the position of what was read (``_recheck_watched``).
        """
        name = f.current_name()
        if name is None or name.endswith(" (deleted)"):
            name = f.path
        log.info(
            "source %s: %s, read to its end and quiet for %.0f s, is closed; followed by name",
            self.name,
            name,
            idle,
        )
        w = Watched(
            name, f.dev, f.inode, f.file_id, f.read_pos, f.origin, f.rotated_at or 0.0, f.last_data
        )
        self._close(f)
        self._watch(w)

    def _watch(self, w: Watched) -> None:
        if len(self.watched) >= MAX_WATCHED:
            oldest = min(self.watched.values(), key=lambda o: o.last_data)
            log.warning(
                "source %s: more than %d rotated files followed by name; %s no longer is",
                self.name,
                MAX_WATCHED,
                oldest.path,
            )
            del self.watched[oldest.key]
        self.watched[w.key] = w

    def _open_keys(self) -> set[Key]:
        """Files open, held or followed by name."""
        return {f.key for f in self.files.values()} | self.blanks.keys() | self.watched.keys()

    def _moved_on(self, origin: str) -> bool:
        """True once the path a file was rotated from holds a file with lines."""
        return any(f.path == origin and f.rotated_at is None for f in self.files.values())

    def _writer_may_be_in(self, origin: str, fileobj: io.FileIO) -> bool:
        """True for a rotated file whose writer may not have moved on: nothing with a
        line in it is at the path it came from, and it still has a name.

        Copytruncate never tells the writer to reopen: a file copytruncated and then
        renamed stays its writer's file, however quiet the writer is. Once the path holds
        a file with lines the writer has moved on; a deleted file is not kept (its disk
        space is freed only once it is closed).
        """
        if self._moved_on(origin):
            return False
        try:
            return os.fstat(fileobj.fileno()).st_nlink > 0
        except (OSError, ValueError):
            return False

    def _close(self, f: LogFile) -> None:
        try:
            st: os.stat_result | None = os.fstat(f.fileobj.fileno())
        except (OSError, ValueError):
            st = None
        f.close()
        if self.files.get(f.file_id) is f:
            del self.files[f.file_id]
        self.stored[f.file_id] = f.splitter.offset
        o = self.owed.get(f.file_id)
        if o is not None and f.splitter.offset > o.offset:
            del self.owed[f.file_id]  # read past the line owed: it was emitted
        elif o is not None and st is not None:
            # Not past it (a copy whose compressor stopped): not opened again for it
            # unless it changes.
            o.looked[f.path] = (f.key, st.st_size)
        # A deleted file is not met again; its inode may be, as another file's.
        if st is not None and st.st_nlink > 0:
            self.known[f.key] = (f.file_id, st.st_size)

    def close(self) -> None:
        """Close every file now, or once the worker-thread work in flight has ended."""
        if self._jobs:
            self._close_pending = True
            return
        self._close_now()

    def _close_now(self) -> None:
        self._close_pending = False
        for f in list(self.files.values()):
            f.close()
        self.files.clear()
        for b in list(self.blanks.values()):
            b.close()
        self.blanks.clear()
        self.watched.clear()
        self.owed.clear()

    # -- reconcile: runs in a worker thread ----------------------------------------------

    def _reconcile(self) -> None:
        now = self.clock()
        wall = time.time()
        found = self._discover(now)
        by_key = {(st.st_dev, st.st_ino): p for p, st in found.items()}
        self._rotated_paths.clear()
        for f in list(self.files.values()):
            if f.rotated_at is None:
                self._recheck(f, found, by_key, now)
            elif not f.compressed:
                f.size = f.fstat_size()
        for b in list(self.blanks.values()):
            self._recheck_blank(b, found, by_key, now)
        for w in list(self.watched.values()):
            self._recheck_watched(w, now)
        if self._absent:
            # A file may have been created at the path and rotated away since.
            self._rotated_paths.add(self.config.path)
        self._absent = self.kind == "file" and self.config.path not in found
        if self._rotated_paths and self._last_wall is not None:
            self._pick_up_missed(self._rotated_paths, self._last_wall - MTIME_SLACK, now)
        self._look_for_owed(now)
        self._open_found(found, now)
        # Forget closed files that are no longer matched (kept only to avoid re-reading).
        self.known = {k: v for k, v in self.known.items() if k in by_key}
        if self._startup:
            self._startup = False
            self._resume_orphans(found, now)
            if not self.initial and self.last_seen is not None:
                # Files that came and went while the daemon was down (or before its
                # first commit): written since it was last seen, never read.
                paths = set(found) | ({self.config.path} if self.kind == "file" else set())
                self._pick_up_missed(paths, self.last_seen - RESUME_MARGIN, now)
        self.initial = False
        self._last_wall = wall
        at_path = [f.path for f in self.files.values() if f.rotated_at is None]
        at_path += [b.path for b in self.blanks.values() if b.rotated_at is None]
        self._link_dirs = {
            os.path.dirname(os.path.realpath(p)) for p in at_path if os.path.islink(p)
        }

    def _open_found(self, found: Mapping[str, os.stat_result], now: float) -> None:
        """Open the matched files not open (or held) yet, oldest first."""
        open_keys = self._open_keys()
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
            except PathError as exc:
                self._fail(path, str(exc), now)
            except FileNotFoundError:
                pass
            except OSError as exc:
                self._fail(path, reason(exc), now)
            else:
                self._ok(path)

    def _discover(self, now: float) -> dict[str, os.stat_result]:
        """Matched regular files (symlinks followed) -> their stat; errors recorded."""
        d = discover(self.config.path, self.kind)
        self._waiting = d.waiting
        for p in self._unlisted - d.failed.keys():
            self._ok(p)  # could not be looked at last time, can now
        self._unlisted = set(d.failed)
        for p, msg in d.failed.items():
            self._fail(p, msg, now)
        for p in d.missing:
            self._errors.pop(p, None)
        for p in d.not_files:
            self._errors[p] = NOT_A_FILE
        for p in d.found:
            if self._errors.get(p) == NOT_A_FILE:
                self._ok(p)
        for p in list(self._errors):
            if p not in d.candidates and not os.path.lexists(p):
                self._ok(p)
        return d.found

    def _recheck(
        self,
        f: LogFile,
        found: Mapping[str, os.stat_result],
        by_key: Mapping[Key, str],
        now: float,
    ) -> None:
        """Is the path still this file, with the same content? Else it rotated."""
        st = found.get(f.path)
        if st is None or (st.st_dev, st.st_ino) != f.key:
            if st is None and self._errors.get(f.path, "").startswith("permission"):
                return  # the name cannot be looked at any more; the descriptor still reads
            old = f.path
            moved = by_key.get(f.key) or f.current_name()
            if moved and not moved.endswith(" (deleted)"):
                how = f"renamed to {moved}"
                f.path = moved
            else:
                how = "deleted" if moved else "moved away"
            self._rotated_paths.add(old)
            if not f.compressed and (f.fstat_size() < f.read_pos or f.replaced()):
                # Truncated (copytruncate) *before* it moved away, all between two
                # checks: the copy holds its unread part, and what the descriptor reads
                # now (or later: the writer still holds it) is another file.
                self._truncated(f, now, f"then {how}", f.size, at=old)
                return
            log.info("source %s: %s was %s; finishing it first", self.name, old, how)
            f.rotated_at = now
            f.eof = False
            self._out.append(Chunk(self.name, [], self._position(f), 0, rotations=1))
            return
        if f.compressed:
            return
        seen, f.size = f.size, st.st_size  # the size before: what is known to have been there
        if st.st_size < f.read_pos:
            self._truncated(f, now, f"shrank to {st.st_size} bytes", seen)
            return
        if f.replaced():
            self._truncated(f, now, "its first line changed", seen)

    def _truncated(
        self, f: LogFile, now: float, how: str, seen: int, at: str | None = None
    ) -> None:
        """copytruncate: finish from the rotated copy, then the file restarts at 0.

        ``seen``: its size at the last look before the truncation. ``at`` is the path it
        was truncated at (its copy is beside it), if it has moved.
        The truncated file goes on on a descriptor of its own, as a new file: it is read
        from 0 once it has a first line, wherever it is by then.
        """
        path = f.path if at is None else at
        self._rotated_paths.add(path)
        copy = self._find_copy(path, f.file_id, f.read_pos, exclude=f.key, now=now)
        restart: Blank | None = None
        try:
            restart = hold_again(f)  # before f is closed
        except (PathError, OSError) as exc:
            log.warning("source %s: %s: %s", self.name, f.path, reason(exc))
        if restart is not None and at is not None:
            restart.rotated_at = now  # after the copy: it came later at the same path
            restart.origin = at
        f.close()
        del self.files[f.file_id]
        self._follow_copy(f, copy, path, how, now, seen)
        if restart is not None:
            self._follow(restart, now)

    def _follow_copy(
        self, f: LogFile, copy: LogFile | None, path: str, how: str, now: float, seen: int
    ) -> None:
        if copy is None:
            # What was seen beyond the last complete line is lost for sure (a cut line
            # among it); what was written after the last look, if anything, unseen.
            gap = self._gap(f, path, GapKind.TRUNCATION, how, seen - f.splitter.offset)
            self._out.append(Chunk(self.name, [], self._position(f), 0, rotations=1, gaps=(gap,)))
            return
        log.info(
            "source %s: %s was truncated (%s); reading its rest from %s",
            self.name,
            path,
            how,
            copy.path,
        )
        copy.splitter = f.splitter  # the same byte stream: a partial line carries over
        copy.splitter.file = copy.path
        copy.rotated_at = now
        copy.origin = path
        self.files[copy.file_id] = copy
        self._out.append(Chunk(self.name, [], self._position(copy), 0, rotations=1))

    def _follow(self, b: Blank, now: float) -> None:
        """Read ``b`` now if it has a first line, else hold it until it has one."""
        if self._promote(b, now):
            return
        if b.key in self.blanks or len(self.blanks) >= MAX_BLANKS:
            if b.rotated_at is None:
                self.known[b.key] = ("", b.size)  # looked at again once its size changes
            b.close()
            return
        b.last_data = now
        self.blanks[b.key] = b

    def _recheck_blank(
        self,
        b: Blank,
        found: Mapping[str, os.stat_result],
        by_key: Mapping[Key, str],
        now: float,
    ) -> None:
        """A held file without a first line: did it move, was it written, has it one now?"""
        st = b.fstat()
        if st is None:
            self._drop_blank(b)
            return
        if st.st_size != b.size:
            b.size, b.last_data = st.st_size, now
        at = found.get(b.path)
        if b.rotated_at is not None:
            pass
        elif at is None or (at.st_dev, at.st_ino) != b.key:
            if not (at is None and self._errors.get(b.path, "").startswith("permission")):
                old = b.path
                moved = by_key.get(b.key) or b.current_name()
                if moved and not moved.endswith(" (deleted)"):
                    b.path = moved
                log.info(
                    "source %s: %s, still without a complete line, moved away; following it",
                    self.name,
                    old,
                )
                b.rotated_at = now
                self._rotated_paths.add(old)
        elif self._last_wall is not None and st.st_mtime >= self._last_wall - MTIME_SLACK:
            # Written since the last check, yet without a complete first line: it may
            # have been filled and copytruncated in between, its copy beside it.
            self._rotated_paths.add(b.path)
        if self._promote(b, now):
            return
        if b.rotated_at is None:
            return
        idle = now - max(b.rotated_at, b.last_data)
        if idle < self.rotate_wait:
            return
        if self._writer_may_be_in(b.origin, b.fileobj):
            if idle >= self.idle_close:
                name = b.current_name() or b.path
                log.info(
                    "source %s: %s, without a complete line and quiet for %.0f s, is closed;"
                    " followed by name",
                    self.name,
                    name,
                    idle,
                )
                self._drop_blank(b)
                self._watch(
                    Watched(name, *b.key, None, st.st_size, b.origin, b.rotated_at, b.last_data)
                )
        else:
            if b.size:
                log.info(
                    "source %s: %s closed with %d bytes of an unterminated first line",
                    self.name,
                    b.path,
                    b.size,
                )
            self._drop_blank(b)

    def _drop_blank(self, b: Blank) -> None:
        b.close()
        if self.blanks.get(b.key) is b:
            del self.blanks[b.key]

    def _promote(self, b: Blank, now: float) -> bool:
        """Start reading ``b`` if it has a first line now; True when ``b`` is done with."""
        fid = b.head_fingerprint()
        if not fid:
            return False
        if fid in self.files:
            # A copy of a file being read: nothing new in it.
            if b.rotated_at is None:
                self.known[b.key] = (fid, b.size)
            self._drop_blank(b)
            return True
        try:
            done = self._start(
                fid,
                lambda offset: open_held(b, self.name, offset, self.max_line, now),
                rotated_at=b.rotated_at,
                origin=b.origin,
            )
        except (PathError, OSError) as exc:
            log.warning("source %s: %s: %s", self.name, b.path, reason(exc))
            return False
        if done:
            self._drop_blank(b)
        return done

    # -- unterminated last lines owed ---------------------------------------------------------

    def _owe(self, file_id: str, origin: str, offset: int, now: float) -> None:
        """Look out for a finished compressed copy of a file left with an unterminated
        last line at ``offset`` (see ``Owed``)."""
        o = self.owed.get(file_id)
        if o is not None and o.offset == offset:
            # Left again (its rest was read from another copy): the copies looked at
            # stay known, so a compressed one that stopped is not read once more.
            o.since = now
            return
        if len(self.owed) >= MAX_WATCHED:
            del self.owed[min(self.owed, key=lambda k: self.owed[k].since)]
        self.owed[file_id] = Owed(origin, offset, now)

    def _owe_rest(self, w: Watched, now: float) -> None:
        """``w``, let go with an unterminated last line, is not followed any more."""
        fid = w.file_id
        if fid is not None and fid not in self.files and self.stored.get(fid, w.size) < w.size:
            self._owe(fid, w.origin, self.stored[fid], now)

    def _look_for_owed(self, now: float) -> None:
        """Read the compressed copies of files left with an unterminated last line, from
        that line: once a copy's stream has ended, it is complete (``_retire``).

        A copy is looked for for ``idle_close`` seconds after its file was left (its
        compressor may be slow to start), and again after the next rotation of the path
        it came from (logrotate's ``delaycompress`` compresses it then).
        """
        for fid, o in list(self.owed.items()):
            if fid in self.files:
                continue  # being read (a copy not finished yet, say)
            if now - o.since >= self.idle_close:
                if o.renewed:
                    log.info(
                        "source %s: no compressed copy of the file rotated from %s completes"
                        " its unterminated last line (offset %d); it is not read",
                        self.name,
                        o.origin,
                        o.offset,
                    )
                    del self.owed[fid]
                    continue
                if o.origin not in self._rotated_paths:
                    continue  # dormant until the next rotation
                o.since, o.renewed = now, True
            f = self._owed_copy(fid, o, now)
            if f is None:
                continue
            log.info(
                "source %s: reading the unterminated last line of the file rotated from %s"
                " from its compressed copy %s",
                self.name,
                o.origin,
                f.path,
            )
            f.rotated_at, f.origin = now, o.origin
            self.files[fid] = f

    def _owed_copy(self, fid: str, o: Owed, now: float) -> LogFile | None:
        """A compressed copy of ``fid`` beside ``o.origin`` that goes on after ``o.offset``
        (or may: still being written), opened there; each looked at once as it is."""
        for sib in rotated_siblings(o.origin):
            if not rotated_name(o.origin, sib):
                continue
            try:
                st = os.stat(sib)
                if not o.changed(sib, st):
                    continue
                p = peek(sib)
                if not p.compressed or p.file_id != fid:
                    continue
                f = open_at(sib, self.name, o.offset, self.max_line, now)
            except (PathError, OSError):
                continue
            if f is None:
                continue
            if f.eof or f.file_id != fid:  # it ends before the line: not the copy sought
                f.close()
                continue
            return f
        return None

    # -- files followed by name --------------------------------------------------------------

    def _recheck_watched(self, w: Watched, now: float) -> None:
        """A file followed by name: gone, written to (open it again), or no longer owed?"""
        where = locate(w)
        if where is None:
            self._unwatch(w, None)  # deleted, or moved out of its directory
            self._owe_rest(w, now)  # its compressed copy may be all that is left
            return
        w.path, st = where
        twin = self.files.get(w.file_id) if w.file_id is not None else None
        if twin is not None and twin.key != w.key and twin.fstat_size() > w.size:
            # Of two alike files, the other one was written to: its writer's.
            if st.st_size > w.size:
                log.warning(
                    "source %s: %s and %s, alike, were both written to; %d bytes of the"
                    " second after offset %d are not read",
                    self.name,
                    twin.path,
                    w.path,
                    st.st_size - w.size,
                    w.size,
                )
            self._unwatch(w, st)
            return
        if st.st_size <= w.size:
            if (
                twin is None
                and now - max(w.rotated_at, w.last_data) >= self.rotate_wait
                and self._moved_on(w.origin)
            ):
                self._unwatch(w, st)  # its writer is in the file now at its path
                self._owe_rest(w, now)
            return
        w.last_data = now
        if twin is not None and twin.key != w.key:
            done = self._switch_twin(twin, w, now)
        else:
            done = self._reopen(w, now)
        if done and self.watched.get(w.key) is w:
            del self.watched[w.key]

    def _unwatch(self, w: Watched, st: os.stat_result | None) -> None:
        if self.watched.get(w.key) is w:
            del self.watched[w.key]
        if st is not None:
            self.known[w.key] = (w.file_id or "", st.st_size)  # not a new file if matched

    def _reopen(self, w: Watched, now: float) -> bool:
        """Read a file let go again, from its position: it grew. True when done with ``w``."""
        try:
            p = peek(w.path)
            if p.key != w.key:
                return False  # renamed again meanwhile: found at the next check
            if p.file_id is None:
                b = hold(w.path)
                if b.key != w.key:
                    b.close()
                    return False
                b.rotated_at, b.origin = w.rotated_at, w.origin
                log.info("source %s: %s, followed by name, was written to", self.name, w.path)
                if self._promote(b, now):
                    return True
                if b.key in self.blanks or len(self.blanks) >= MAX_BLANKS:
                    b.close()
                    return False  # still followed by name
                b.last_data = now
                self.blanks[b.key] = b
                return True

            def opener(offset: int) -> LogFile | None:
                f = open_at(w.path, self.name, offset, self.max_line, now)
                if f is not None and f.key != w.key:
                    f.close()
                    return None
                return f

            if p.file_id in self.files:
                return True  # now a copy of a file being read: nothing new in it
            log.info("source %s: %s, followed by name, was written to", self.name, w.path)
            return self._start(p.file_id, opener, rotated_at=w.rotated_at, origin=w.origin)
        except (PathError, OSError) as exc:
            log.debug("source %s: %s: %s", self.name, w.path, reason(exc))
            return False

    def _switch_twin(self, f: LogFile, w: Watched, now: float) -> bool:
        """``w``, alike ``f`` when found, grew and ``f`` did not: ``w`` is the file its
        writer holds (``f``, a copy). Reading goes on in ``w`` where it stood in ``f``."""
        try:
            g = open_at(w.path, self.name, f.read_pos, self.max_line, now)
        except (PathError, OSError):
            return False
        if g is None or g.key != w.key or g.file_id != f.file_id:
            if g is not None:
                g.close()
            return self._reopen(w, now)  # no longer alike: another file now
        if not same_bytes(f.fileobj, g.fileobj, f.read_pos):
            g.close()
            log.warning(
                "source %s: %s starts like %s but holds other lines; not read",
                self.name,
                w.path,
                f.path,
            )
            return True
        log.info(
            "source %s: %s and %s were alike; %s was written to: reading it instead",
            self.name,
            f.path,
            w.path,
            w.path,
        )
        g.preamble = f.preamble  # what of it was not emitted yet
        g.splitter = f.splitter  # the same bytes up to here: a partial line carries over
        g.splitter.file = g.path
        if f.rotated_at is not None:  # else it is at a path of its own
            g.rotated_at, g.origin = f.rotated_at, f.origin
        self._close(f)
        self.files[g.file_id] = g
        self._out.append(Chunk(self.name, [], self._position(g), 0))
        return True

    def _watch_twins(self, f: LogFile, twins: Iterable[tuple[str, Peek]], now: float) -> None:
        """Follow by name the files alike ``f`` (same first line, length and time)."""
        for path, p in twins:
            if p.key == f.key or p.key in self.watched:
                continue
            log.info(
                "source %s: %s and %s are alike; reading the first, watching the second",
                self.name,
                f.path,
                path,
            )
            rotated_at = now if f.rotated_at is None else f.rotated_at
            self._watch(Watched(path, *p.key, p.file_id, p.size, f.origin, rotated_at, now))

    def _find_copy(
        self, path: str, file_id: str, offset: int, exclude: Key, now: float
    ) -> LogFile | None:
        """A rotated copy of ``file_id`` beside ``path``, opened at ``offset``.

        The longest one: an older copy of the same file (logrotate's ``copy``, or a
        compressed twin being written) may end before what was unread.
        """
        cands: list[tuple[int, str]] = []
        for cand in rotated_siblings(path):
            try:
                p = peek(cand)
            except (PathError, OSError):
                continue
            if p.file_id == file_id and p.key != exclude:
                cands.append((-p.length, cand))
        for _, cand in sorted(cands):
            try:
                f = open_at(cand, self.name, offset, self.max_line, now)
            except (PathError, OSError):
                continue
            if f is not None:
                return f
        return None

    def _pick_up_missed(self, paths: Iterable[str], since: float, now: float) -> None:
        """Files created and rotated away between two checks: read them, oldest first.

        Beside a path that just rotated, a file written since the last check whose first
        line is unknown was never seen at the path: it came and went in between. Of
        several copies of one file, the longest is read; a copy of the file at the path
        now is not (that file is read there). One without a complete first line yet is
        held (its writer may still fill it). Nothing ties such a file to the log but its
        name: only a rotated name is taken (a number or a date after the log's name, as
        ``rotated_name`` reads it), not ``access.log.bak`` or ``access.log-notes.txt``.
        """
        open_keys = self._open_keys()
        alike: dict[str, list[tuple[str, Peek]]] = {}  # id -> its files
        best: dict[str, tuple[int, float, str, str]] = {}  # id -> length, mtime, file, path
        blank: list[tuple[str, str]] = []  # (file, path)
        for path in set(paths):
            here = _file_id(path)
            for sib in rotated_siblings(path):
                if not rotated_name(path, sib):
                    continue
                try:
                    st = os.stat(sib)
                    key = (st.st_dev, st.st_ino)
                    if st.st_mtime < since or key in open_keys or key in self.known:
                        continue
                    p = peek(sib)
                except (PathError, OSError):
                    continue
                fid = p.file_id
                if fid is None and not p.compressed:
                    blank.append((sib, path))
                if fid is None or fid == here or fid in self.files or fid in self.stored:
                    continue
                alike.setdefault(fid, []).append((sib, p))
                # Of equal ones the oldest: a copy is written after what it copies.
                if fid not in best or (p.length, -p.mtime) > (best[fid][0], -best[fid][1]):
                    best[fid] = (p.length, p.mtime, sib, path)
        ordered = sorted(best.values(), key=lambda c: (c[1], c[2]))
        for i, (_, _, sib, origin) in enumerate(ordered):
            try:
                f = open_at(sib, self.name, 0, self.max_line, now)
            except (PathError, OSError):
                continue
            if f is None or f.file_id in self.files:
                if f is not None:
                    f.close()
                continue
            log.info("source %s: %s was rotated before it was seen; reading it", self.name, sib)
            f.rotated_at = now + (i + 1) * 1e-6  # after the file it followed, in mtime order
            f.origin = origin
            self.files[f.file_id] = f
            open_keys.add(f.key)
            self._out.append(Chunk(self.name, [], self._position(f), 0, rotations=1))
            self._watch_twins(f, _twins(alike[f.file_id], sib), now)
        self._hold_missed(blank, open_keys, now)

    def _hold_missed(self, blank: list[tuple[str, str]], open_keys: set[Key], now: float) -> None:
        """Hold the files found beside a rotated path without a complete first line."""
        for sib, origin in blank:
            try:
                b = hold(sib)
            except (PathError, OSError):
                continue
            if b.key in open_keys:
                b.close()
                continue
            log.info(
                "source %s: %s, rotated before it had a complete line, is held", self.name, sib
            )
            b.rotated_at, b.origin = now, origin
            open_keys.add(b.key)
            self._follow(b, now)

    def _maybe_written(self, mtime: float) -> bool:
        """Changed since shortly before the daemon was last seen: its writer may be in it."""
        return self.last_seen is not None and mtime >= self.last_seen - RESUME_MARGIN

    def _resume_orphans(self, found: Mapping[str, os.stat_result], now: float) -> None:
        """After a restart: finish files that rotated away while the daemon was down.

        One read to its end is followed too if it changed lately: its writer (one that
        was never told to reopen, after copytruncate) may still write to it.
        """
        missing = {fid for fid in self.stored if fid not in self.files}
        if not missing:
            return
        places: dict[str, str] = {}  # rotated file -> the path it was rotated from
        for path in [*found, *([self.config.path] if self.kind == "file" else [])]:
            places.update(dict.fromkeys(rotated_siblings(path), path))
        open_keys = self._open_keys()
        # Of several files with one first line, the longest; then a plain one; then the
        # oldest (a copy is written after what it copies, which its writer may still hold).
        # Alike ones (same length and time: ``cp -p``) are watched until one is written to.
        best: dict[str, tuple[int, bool, float, str]] = {}
        alike: dict[str, list[tuple[str, Peek]]] = {}
        for cand in places:
            try:
                p = peek(cand)
            except (PathError, OSError):
                continue
            if p.file_id is None or p.file_id not in missing or p.key in open_keys:
                continue
            offset = self.stored[p.file_id]
            if not p.compressed and offset >= p.size and not self._maybe_written(p.mtime):
                continue  # read to its end, and not written to since
            alike.setdefault(p.file_id, []).append((cand, p))
            rank = (p.length, not p.compressed, -p.mtime, cand)
            if p.file_id not in best or rank > best[p.file_id]:
                best[p.file_id] = rank
        for fid, (_, _, _, cand) in sorted(best.items(), key=lambda kv: -kv[1][2]):
            offset = self.stored[fid]
            try:
                f = open_at(cand, self.name, offset, self.max_line, now)
            except (PathError, OSError):
                continue
            if f is None:
                continue
            missing.discard(f.file_id)
            if f.eof:
                self._close(f)
                continue
            log.info(
                "source %s: resuming %s (rotated while stopped) at %d", self.name, cand, offset
            )
            f.rotated_at = now
            f.origin = places[cand]
            self.files[f.file_id] = f
            open_keys.add(f.key)
            self._out.append(Chunk(self.name, [], self._position(f), 0, rotations=1))
            self._watch_twins(f, _twins(alike[fid], cand), now)

    def _open_new(self, path: str, now: float) -> None:
        """A matched file not open yet: resume it, or start it per the source's ``start``."""
        p = peek(path)
        if p.file_id is None:
            # No complete first line yet: nothing to read either. It is held open, so
            # that what is written to it is read even if it is rotated away first.
            self._follow(hold(path), now)
            return
        f = self.files.get(p.file_id)
        if f is not None:
            alike = os.fstat(f.fileobj.fileno())
            if not f.compressed and (alike.st_size, alike.st_mtime) == (p.size, p.mtime):
                self._watch_twins(f, [(path, p)], now)  # which is written to, if any?
            else:
                self.known[p.key] = (p.file_id, p.size)  # a copy of a file being read
            return
        self._start(p.file_id, lambda offset: open_at(path, self.name, offset, self.max_line, now))

    def _start(
        self,
        file_id: str,
        opener: Callable[[int], LogFile | None],
        *,
        rotated_at: float | None = None,
        origin: str = "",
    ) -> bool:
        """Open a file not open yet at its stored position, or per the source's ``start``.

        ``rotated_at``: it has already moved away from ``origin``. False when the file
        has no complete first line (any more).
        """
        stored = self.stored.get(file_id)
        if stored is not None:
            offset = stored
        elif self.initial and self.config.start == "end":
            offset = -1  # the end of its last complete line
        else:
            offset = 0
        f = opener(offset)
        if f is None:
            return False
        if f.compressed and f.eof:
            if stored is None:
                self._out.append(Chunk(self.name, [], self._position(f), 0))
            self._close(f)
            return True
        if rotated_at is not None:
            f.rotated_at, f.origin = rotated_at, origin
        self.files[f.file_id] = f
        if stored is None:
            if rotated_at is not None:
                log.info(
                    "source %s: %s, rotated away from %s before its first line, was"
                    " written to; reading it",
                    self.name,
                    f.path,
                    origin,
                )
            elif offset != 0:
                log.info("source %s: %s: starting at its end (%d)", self.name, f.path, f.read_pos)
            else:
                log.info("source %s: %s: new file, reading from its beginning", self.name, f.path)
            rotations = 0 if rotated_at is None else 1
            self._out.append(Chunk(self.name, [], self._position(f), 0, rotations=rotations))
        return True

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


def _twins(files: list[tuple[str, Peek]], chosen: str) -> list[tuple[str, Peek]]:
    """Of ``files`` (one first line), the plain ones alike ``chosen``: same length and
    modification time (``cp -p``), so which one its writer holds cannot be told yet."""
    ref = next(p for path, p in files if path == chosen)
    return [
        (path, p)
        for path, p in files
        if path != chosen
        and not p.compressed
        and not ref.compressed
        and (p.size, p.mtime) == (ref.size, ref.mtime)
    ]


def _file_id(path: str) -> str | None:
    try:
        return peek(path).file_id
    except (PathError, OSError):
        return None


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
