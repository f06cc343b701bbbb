"""`scan`: one pass of the daemon's pipeline over files and directories, then exit.

Resumes each file where the last scan of it stopped (known by the fingerprint of its first
line, see ``auditor.fileid``), so scanning an unchanged file again adds nothing, a grown
file adds only its new lines, and a ``.gz`` rotated copy of a scanned file adds nothing.
Positions commit with the events they cover. Bad files are counted and reported, never fatal.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from auditor.decodeworker import (
    END_COMPRESSED,
    END_PLAIN,
    MORE,
    PARALLEL_MIN_BYTES,
    Chunk,
    DecodePool,
    decode_chunk,
    spreadable,
)
from auditor.fileid import FileIdentity, identify, open_log
from auditor.formats import FormatSpec
from auditor.lines import LineSplitter, leading_directives
from auditor.model import Line
from auditor.pipeline import Batch, Pipeline, Position, merge
from auditor.progress import Progress
from auditor.store import Store
from auditor.store.eventblocks import serialize_events

log = logging.getLogger(__name__)

CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class ParallelDecode:
    """What a decode worker needs: the redaction key and each source's format."""

    key: bytes
    spec_for: Callable[[str], FormatSpec]
    min_bytes: int = PARALLEL_MIN_BYTES
    workers: int = 1  # decode worker processes


@dataclass
class ScanSummary:
    files: int = 0
    files_skipped: int = 0
    lines: int = 0
    events: int = 0
    unparsed: int = 0
    hits: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    pending_partial: int = 0  # files whose last line has no newline yet


class LazyStore:
    """A scan's store, which a scan into a new store opens only when it first writes.

    Opening a store imports sqlite-utils and, for a new one, creates its tables: about
    0.1 s that a scan spent before its decode workers started. A new store holds nothing
    (no positions, no detector state) until this scan writes, so its decode workers can
    start at once, and the store is opened by the first batch's write, in the writer
    thread, while they decode. The sources registered before are recorded then, before
    that batch. An existing store is opened at once (``at``), as before.
    """

    def __init__(self, path: Path | None, store: Store | None = None) -> None:
        self.path = path
        self.new = store is None  # the store holds nothing yet: it did not exist
        self._store = store
        self._sources: list[tuple[str, str, str]] = []  # registered while not open
        self._lock = threading.Lock()

    @classmethod
    def at(cls, path: Path) -> LazyStore:
        """The store at ``path``: opened now if it exists; otherwise its file is created
        now (owner-only; the errors of ``Store.open``), its tables when first used."""
        if path.exists() or path.with_name(path.name + "-wal").exists():
            return cls(path, Store.open(path, check_same_thread=False))
        Store.create(path)
        return cls(path)

    @property
    def opened(self) -> Store | None:
        """The store if it is open; None while a new one is not yet."""
        return self._store

    def get(self) -> Store:
        """The store, opened (and its sources registered) if it is not yet."""
        with self._lock:
            if self._store is None:
                assert self.path is not None
                store = Store.open(self.path, check_same_thread=False)
                try:
                    for name, path, fmt in self._sources:
                        store.register_source(name, path, fmt)
                except BaseException:
                    store.close()
                    raise
                self._sources.clear()
                self._store = store
            return self._store

    def register_source(self, name: str, path: str, fmt: str) -> None:
        """``Store.register_source``, or recorded until the store opens."""
        with self._lock:
            store = self._store
            if store is None:
                self._sources.append((name, path, fmt))
                return
        store.register_source(name, path, fmt)

    def close(self) -> None:
        """Close the store if it is open."""
        if self._store is not None:
            self._store.close()


def expand_paths(paths: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to scan, oldest first (so rotated files come before their successors)."""
    found: list[Path] = []
    missing: list[tuple[str, str]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(Path(root) / n for n in names if not n.startswith("."))
        elif p.exists():
            found.append(p)
        elif any(ch in raw for ch in "*?["):
            found.extend(Path(g) for g in glob.glob(raw) if Path(g).is_file())
        else:
            missing.append((raw, "no such file or directory"))

    def mtime(q: Path) -> tuple[float, str]:
        try:
            return (q.stat().st_mtime, str(q))
        except OSError:
            return (0.0, str(q))

    unique = sorted(set(found), key=mtime)
    return unique, missing


class _Batcher:
    """Collects lines across files into batches; each batch carries its files' positions.

    Batches are written by one writer thread while this thread decodes the next batch:
    SQLite releases the GIL while it works, so the two overlap on two cores. At most one
    batch is in flight, which bounds memory.

    (A plain class, as is ``_Sent``: making a dataclass is ~1.5 ms of every scan's start.)
    """

    def __init__(
        self,
        pipeline: Pipeline,
        store: LazyStore,
        reader: Store | None,
        batch_lines: int,
        summary: ScanSummary,
    ) -> None:
        self.pipeline = pipeline
        self.store = store  # the writer's connection, used only from the writer thread
        # A second connection for position lookups from this thread; None: the store was
        # new, and what this scan wrote is known here (``flushed``).
        self.reader = reader
        self.batch_lines = batch_lines
        self.summary = summary
        self.lines: list[Line] = []
        self.positions: dict[str, Position] = {}
        self.flushed: dict[str, int] = {}  # file_id -> offset sent to write
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        self.inflight: Future[None] | None = None
        self.decoded: Batch | None = None  # chunks decoded by a worker, not yet detected
        self.decoded_lines = 0
        self.positions_seen: dict[str, int] = {}  # file_id -> decoded offset

    def resume_offset(self, file_id: str) -> int:
        pending = self.positions.get(file_id)
        if pending is not None:
            return pending.offset
        if file_id in self.positions_seen:
            return self.positions_seen[file_id]
        if file_id in self.flushed:
            return self.flushed[file_id]
        if self.reader is None:
            return 0
        stored = self.reader.position(file_id)
        return stored.offset if stored else 0

    def add(self, lines: list[Line], pos: Position) -> None:
        self.lines.extend(lines)
        self.positions[pos.file_id] = pos
        if len(self.lines) >= self.batch_lines:
            self.flush()

    def add_decoded(self, part: Batch, pos: Position) -> None:
        """A chunk decoded by the worker (see ``auditor.decodeworker``). Detection runs
        chunk by chunk, so the worker is never idle for a whole batch's detection."""
        part.positions = [pos]
        self.pipeline.detect(part, snapshot=False)
        part.drop_events()
        if self.decoded is None:
            self.decoded = part
        else:
            merge(self.decoded, part)
        self.decoded_lines += sum(c.lines_read for c in part.counters.values())
        self.positions_seen[pos.file_id] = pos.offset
        if self.decoded_lines >= self.batch_lines:
            self.flush()

    def _take_decoded(self) -> Batch:
        assert self.decoded is not None
        batch, self.decoded = self.decoded, None
        lines, self.decoded_lines = self.decoded_lines, 0
        # Keep only the last position per file, in order.
        last: dict[str, Position] = {}
        for p in batch.positions:
            last[p.file_id] = p
        batch.positions = list(last.values())
        if self.pipeline.detector is not None:
            batch.detector_state = self.pipeline.detector.snapshot()
        self.summary.lines += lines
        return batch

    def flush(self) -> None:
        if self.decoded is not None:
            batch = self._take_decoded()
            self.wait()
            self.inflight = self.executor.submit(_write_batch, self.store, batch)
            self.summary.events += batch.n_events
            self.summary.hits += sum(h.emits for h in batch.hits)
            self.summary.unparsed += sum(c.lines_unparsed for c in batch.counters.values())
            for p in batch.positions:
                self.flushed[p.file_id] = p.offset
        if not self.lines and not self.positions:
            return
        batch = self.pipeline.process(self.lines, list(self.positions.values()))
        self.wait()
        self.inflight = self.executor.submit(_write_batch, self.store, batch)
        self.summary.lines += len(self.lines)
        self.summary.events += len(batch.events)
        self.summary.hits += sum(h.emits for h in batch.hits)
        self.summary.unparsed += len(self.lines) - len(batch.events)
        for fid, pos in self.positions.items():
            self.flushed[fid] = pos.offset
        self.lines = []
        self.positions = {}

    def wait(self) -> None:
        """Wait for the batch in flight; re-raises its StoreError here."""
        if self.inflight is not None:
            fut, self.inflight = self.inflight, None
            fut.result()

    def close(self) -> None:
        try:
            self.flush()
            self.wait()
        finally:
            self.executor.shutdown(wait=True)


def _write_batch(store: LazyStore, batch: Batch) -> None:
    """``write_batch`` in the writer thread, opening a new store first (``LazyStore``)."""
    write_batch(store.get(), batch)


def write_batch(store: Store, batch: Batch) -> None:
    """``Store.write``, then journal what ``--format auto`` chose (kind "format").

    The journal is best effort: the batch is committed by then, and a failure here must
    not make a caller retry (and so duplicate) the batch.
    """
    store.write(batch)
    for source, detail in batch.format_choices:
        try:
            store.journal("format", source, detail)
        except Exception as exc:  # noqa: BLE001 - see above
            log.warning("cannot journal the format of %s: %s", source, exc)


def _chunks(read: Callable[[int], bytes]) -> Iterator[bytes]:
    while True:
        chunk = read(CHUNK)
        if not chunk:
            return
        yield chunk


def _skip(read: Callable[[int], bytes], n: int) -> int:
    """Skip ``n`` bytes of a stream that cannot seek (gzip); returns how many were skipped."""
    left = n
    while left > 0:
        got = read(min(left, CHUNK))
        if not got:
            break
        left -= len(got)
    return n - left


def scan_file(
    path: Path,
    source: str,
    ident: FileIdentity,
    batcher: _Batcher,
    max_line: int,
    on_bytes: Callable[[int], None],
) -> None:
    """Feed one file from its stored position; raises OSError/EOFError/zlib.error."""
    start = batcher.resume_offset(ident.file_id)
    if not ident.compressed and start >= ident.size:
        on_bytes(ident.size)
        return
    splitter = LineSplitter(source, str(path), start, max_line)
    with open_log(path) as f:
        if start > 0:
            head = f.read(min(start, PREAMBLE_MAX))
            f.seek(0)
            replay = leading_directives(head, source, str(path))
            if replay:
                batcher.add(replay, _position(ident, source, path, start))
        if ident.compressed:
            _skip(f.read, start)
        else:
            f.seek(start)
        for chunk in _chunks(f.read):
            lines = splitter.feed(chunk)
            batcher.add(lines, _position(ident, source, path, splitter.offset))
            on_bytes(len(chunk) if not ident.compressed else 0)
        if ident.compressed and splitter.pending:
            # A finished (rotated, compressed) file: its unterminated last line is complete.
            lines = splitter.feed(b"\n")
            batcher.add(lines, _position(ident, source, path, splitter.offset))
        elif splitter.pending:
            batcher.summary.pending_partial += 1
    if ident.compressed:
        on_bytes(ident.size)


HERE = -1  # ``_Sent.worker`` of a chunk this process decodes itself
HERE_CHUNK = 1 << 18
"""With one sieving worker, the chunk size: small chunks share the work finely and hold
less memory in flight (1M bench lines, all rules: tree RSS 160 MiB with 1 MiB chunks,
119 MiB with these, same speed)."""
AHEAD = 12
"""With one sieving worker: this process decodes a chunk itself only while the worker has
at least so many chunks of its own to decode (it never runs dry)."""
HERE_MAX = 10
"""With one sieving worker: chunks this process decoded that may wait for the worker's
earlier ones (each holds its events: bounds memory). Once detection got cheaper (the
lane), 3 left this process waiting for the worker 18% of its time (py-spy --idle); 1M
bench lines, all rules, 4 runs each interleaved: 11.48 s median with 3, 9.99 with 6, 9.79
with 10, 10.24 with 16."""


class _Sent:
    """What the parent remembers of a chunk in flight, to place its result."""

    __slots__ = ("done", "end", "ident", "path", "source", "worker")

    def __init__(self, ident: FileIdentity, source: str, path: str, end: int, worker: int) -> None:
        self.ident = ident
        self.source = source
        self.path = path
        self.end = end
        self.worker = worker  # index in the pool, or HERE
        self.done: Chunk | None = None  # the result of a chunk this process decoded (HERE)


class _HereDecoder:
    """Decodes chunks in this process, as a worker would, while the worker is busy.

    With rules and one worker on two cores the worker was the slower side: since this
    process builds only the events it looks at (``auditor.packedevents``), it waited
    for the worker about 40% of the time (1M bench lines: 9.3 s of its CPU against the
    worker's 14.8 s)."""

    def __init__(self, pipeline: Pipeline, max_line: int) -> None:
        self.pipeline = pipeline
        self.max_line = max_line
        self.splitters: dict[str, LineSplitter] = {}

    def decode(self, s: _Sent, offset: int, data: bytes) -> Chunk:
        got = decode_chunk(
            self.pipeline,
            self.splitters,
            self.max_line,
            s.ident.file_id,
            s.source,
            s.path,
            offset,
            data,
            s.end,
        )
        if got.batch.table is None:
            got.batch.packed = serialize_events(got.batch.events, got.batch.event_ms)
        else:  # decoded into its rows, already serialized
            self.pipeline.sieve_decoded(got.batch)
        return got


def _take_here(pool: DecodePool, ahead: int, waiting: int) -> bool:
    """Whether this process decodes the next chunk itself: only while the worker has
    ``AHEAD`` chunks to do (``ahead``), no result of it is waiting (a waiting result means
    detection is the slower side, as in hit-heavy traffic, and this process has no time to
    spare) and fewer than ``HERE_MAX`` of its own chunks wait (``waiting``)."""
    return ahead >= AHEAD and waiting < HERE_MAX and not pool.workers[0].ready()


def _collect(
    pool: DecodePool,
    sent: deque[_Sent],
    batcher: _Batcher,
    keep: int,
    *,
    ready_only: bool = False,
) -> None:
    """Receive results, in the order the chunks were sent, until at most ``keep`` are in
    flight; ``ready_only``: and then those already at hand (a chunk decoded here, or the
    worker's result waiting), without waiting for any."""
    while sent:
        s = sent[0]
        if len(sent) <= keep and (
            not ready_only or (s.done is None and not pool.workers[s.worker].ready())
        ):
            return
        sent.popleft()
        if s.done is not None:
            got = s.done
        else:
            got = pool.workers[s.worker].receive(events=batcher.pipeline.detector is not None)
        pos = _position(s.ident, s.source, s.path, got.offset)
        batcher.add_decoded(got.batch, pos)
        if s.end == END_PLAIN and got.pending:
            batcher.summary.pending_partial += 1


def scan_file_parallel(
    path: Path,
    source: str,
    spec: FormatSpec,
    ident: FileIdentity,
    batcher: _Batcher,
    pool: DecodePool,
    on_bytes: Callable[[int], None],
) -> None:
    """``scan_file`` with splitting and decoding in the worker processes, while this one
    detects and stores; a few chunks per worker are in flight.

    A chunk is cut after its last newline and the rest goes with the next one, so each
    chunk can go to the next worker in turn (a line with no newline in a whole chunk stays
    with the worker that holds its start). A file whose lines are not ``spreadable``
    (``auto``, W3C: what the first lines say carries over) stays with one worker.

    With one worker and rules, this process decodes a chunk itself whenever it would
    otherwise wait for the worker (``_take_here``), and detects the results in order."""
    sent: deque[_Sent] = deque()
    n = len(pool)
    here = (
        _HereDecoder(batcher.pipeline, pool.max_line)
        if n == 1 and batcher.pipeline.detector is not None
        else None
    )
    spread = (n > 1 or here is not None) and spreadable(spec)
    keep = AHEAD + HERE_MAX if here is not None else 4 if n == 1 else 2 * n
    # Each worker's memory grows with its chunks (lines, events, their rows, twice
    # pickled): with several, half-size chunks keep the process tree near what one
    # worker with whole chunks uses (1M bench, no rules, two workers: tree PSS 157 ->
    # 126 MiB, about 9% slower), where one worker at half size cost 11%.
    size = HERE_CHUNK if here is not None else CHUNK if n == 1 else CHUNK // 2
    turn = 0
    worker = 0  # the turn's taker (chosen as the turn starts: a line stays with one)

    def hand_out(taker: int, offset: int, data: bytes, end: int) -> None:
        """The chunk at ``offset`` to its taker: a worker, or this process (HERE)."""
        s = _Sent(ident, source, str(path), end, taker)
        if taker == HERE:
            assert here is not None
            s.done = here.decode(s, offset, data)
        else:
            pool.workers[taker].send(ident.file_id, source, spec, str(path), offset, data, end)
        sent.append(s)

    try:
        start = batcher.resume_offset(ident.file_id)
        if not ident.compressed and start >= ident.size:
            on_bytes(ident.size)
            return
        end_code = END_COMPRESSED if ident.compressed else END_PLAIN
        # A plain file unbuffered: each chunk is read straight into its own bytes (a
        # buffered read of a megabyte cost four times as much)
        with open_log(path) if ident.compressed else path.open("rb", buffering=0) as f:
            if ident.compressed:
                _skip(f.read, start)
            else:
                f.seek(start)
            offset = start
            buf = f.read(size)
            while buf:
                more = f.read(size)
                end = MORE if more else end_code
                piece, rest = buf, b""
                if spread and more:
                    cut = buf.rfind(b"\n") + 1
                    if cut:
                        piece, rest = buf[:cut], buf[cut:]
                hand_out(worker, offset, piece, end)
                offset += len(piece)
                on_bytes(len(piece) if not ident.compressed else 0)
                _collect(pool, sent, batcher, keep, ready_only=here is not None)
                if spread and piece[-1:] == b"\n":
                    if here is not None:
                        ahead = sum(1 for x in sent if x.done is None)  # the worker's
                        worker = HERE if _take_here(pool, ahead, len(sent) - ahead) else 0
                    else:
                        turn = (turn + 1) % n
                        worker = turn
                buf = rest + more if rest else more
            if sent and sent[-1].end == MORE:  # a file that ended on a chunk boundary
                hand_out(worker, offset, b"", end_code)
    finally:
        # Whatever was read (also before damage) is kept with its position.
        _collect(pool, sent, batcher, 0)
    if ident.compressed:
        on_bytes(ident.size)


def scan_paths(
    paths: list[str],
    store: Store | LazyStore,
    pipeline: Pipeline,
    source_for: Callable[[Path], str],
    *,
    batch_lines: int = 20000,
    max_line: int = 65536,
    quiet: bool = False,
    parallel: ParallelDecode | None = None,
) -> ScanSummary:
    """Scan every file under ``paths``; commit per batch; report skipped files with reasons.

    With ``parallel`` and at least ``parallel.min_bytes`` to read, a second process splits
    and decodes (see ``auditor.decodeworker``); the results are the same either way."""
    summary = ScanSummary()
    files, missing = expand_paths(paths)
    summary.skipped.extend(missing)
    total = 0
    for p in files:
        try:
            total += p.stat().st_size
        except OSError:
            pass
    progress = Progress(total, "scan", quiet=quiet)
    lazy = store if isinstance(store, LazyStore) else LazyStore(store.path, store)
    writer = lazy.opened
    if writer is None:
        reader = None
    else:
        reader = Store.open(writer.path) if writer.path is not None else writer
    batcher = _Batcher(pipeline, lazy, reader, batch_lines, summary)
    done_bytes = 0

    def on_bytes(n: int) -> None:
        nonlocal done_bytes
        done_bytes += n
        progress.update(done_bytes, summary.lines + len(batcher.lines))

    pool = None
    if parallel is not None and total >= parallel.min_bytes:
        pool = DecodePool(parallel.key, max_line, parallel.workers, fork=True)
        if pipeline.setup is not None:
            pool.use_sieve(pipeline.setup.sieve)  # None without rules
    try:
        _scan_all(files, batcher, summary, source_for, max_line, on_bytes, pool, parallel)
    finally:
        if pool is not None:
            pool.finish()  # every result is in: the workers end while the last batch is written
        try:
            batcher.close()
        finally:
            if pool is not None:
                pool.close()
        if reader is not None and reader is not writer:
            reader.close()
    progress.close()
    summary.files_skipped = len(summary.skipped)
    for path_s, reason in summary.skipped:
        lazy.get().journal("skipped", None, f"{path_s}: {reason}")
    return summary


def _scan_all(
    files: list[Path],
    batcher: _Batcher,
    summary: ScanSummary,
    source_for: Callable[[Path], str],
    max_line: int,
    on_bytes: Callable[[int], None],
    pool: DecodePool | None = None,
    parallel: ParallelDecode | None = None,
) -> None:
    for path in files:
        try:
            ident = identify(path)
        except (OSError, EOFError, zlib.error) as exc:
            summary.skipped.append((str(path), _reason(exc)))
            continue
        if ident is None:
            summary.skipped.append((str(path), "empty, or no complete line yet"))
            continue
        summary.files += 1
        try:
            source = source_for(path)
            if (
                pool is not None
                and parallel is not None
                and not _has_preamble(path, batcher.resume_offset(ident.file_id))
            ):
                spec = parallel.spec_for(source)
                scan_file_parallel(path, source, spec, ident, batcher, pool, on_bytes)
            else:
                scan_file(path, source, ident, batcher, max_line, on_bytes)
        except (OSError, EOFError, zlib.error) as exc:
            # What was read before the damage is kept (and its position); the rest is skipped.
            summary.skipped.append((str(path), f"stopped part way: {_reason(exc)}"))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, EOFError):
        return "compressed file ends early (truncated .gz)"
    if isinstance(exc, zlib.error) or type(exc).__name__ == "BadGzipFile":
        return f"corrupt compressed data ({exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


PREAMBLE_MAX = 65536


def _position(ident: FileIdentity, source: str, path: Path | str, offset: int) -> Position:
    return Position(ident.file_id, source, str(path), ident.dev, ident.inode, offset, ident.size)


def _has_preamble(path: Path, start: int) -> bool:
    """A file resumed mid-way that opens with ``#`` lines (W3C): scanned in this process,
    which replays them first (see ``scan_file``)."""
    if start <= 0:
        return False
    with open_log(path) as f:
        return f.read(1) == b"#"
