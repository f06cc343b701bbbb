"""The single writer: batches from a bounded queue, processed and committed in one thread.

Readers ``await queue.put(chunk)``; when the queue holds ``queue_lines`` lines (or
``queue_bytes`` bytes) they wait, so memory stays bounded whatever the input rate. The
writer takes up to ``batch_lines`` lines or ``batch_seconds`` worth of chunks, runs the
pipeline and ``Store.write`` in its own thread (the only one that touches the SQLite
connection), and commits each chunk's file position in the same transaction as its
events. A failed write is retried with the *same* batch (the detector has already seen
its events), and nothing after it is committed first, so a crash or a full disk can
delay data but never skip or double it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from auditor.decodeworker import DecodePool, WorkerError
from auditor.errors import StoreError
from auditor.metrics import Metrics
from auditor.model import Line
from auditor.pipeline import Batch, Pipeline, Position, merge
from auditor.readgap import ReadGap
from auditor.scanfiles import write_batch
from auditor.store import Store
from auditor.store.eventblocks import BLOCK_MAX, serialize_events
from auditor.tail import Chunk, SourceState

log = logging.getLogger(__name__)

T = TypeVar("T")
BATCH_BYTES = 16 << 20  # a batch of very long lines stops here, whatever batch_lines says
MAX_RETRY_DELAY = 30.0
STOP_MARGIN = 0.3  # seconds kept, at shutdown, for closing after the last batch
SNAPSHOT_EVERY = 2.0  # seconds between detector snapshots committed with a batch
LINGER = 0.01  # seconds to wait for the next chunk before committing what is there
WORKER_PART = BLOCK_MAX  # lines per message to the decode worker (one store block)
WORKER_RETRY = 60.0  # seconds before starting a new worker after one failed


@dataclass(eq=False)
class Barrier:
    """Resolved once everything queued before it is committed (used by reload)."""

    done: asyncio.Future[None]


@dataclass(eq=False)
class Stop:
    """The last item: the writer commits what came before and returns."""


QueueItem = Chunk | SourceState | Barrier | Stop


def _weight(item: QueueItem) -> tuple[int, int]:
    if isinstance(item, Chunk):
        return len(item.lines), item.nbytes
    return 0, 0


class BoundedQueue:
    """A FIFO bounded by the lines and bytes it holds (one oversized item always fits)."""

    def __init__(self, max_lines: int, max_bytes: int) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.lines = 0
        self.nbytes = 0
        self._items: deque[QueueItem] = deque()
        self._cond = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, item: QueueItem, *, force: bool = False) -> None:
        n, b = _weight(item)
        async with self._cond:
            while (
                not force
                and self._items
                and (self.lines + n > self.max_lines or self.nbytes + b > self.max_bytes)
            ):
                await self._cond.wait()
            self._items.append(item)
            self.lines += n
            self.nbytes += b
            self._cond.notify_all()

    async def get(self, within: float | None = None) -> QueueItem | None:
        """The next item, or None when none came within ``within`` seconds."""
        async with self._cond:
            if not self._items:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel that
                # comes in the loop turn in which an item does (CPython gh-86296).
                try:
                    async with asyncio.timeout(within):
                        await self._cond.wait_for(lambda: bool(self._items))
                except TimeoutError:
                    return None
            item = self._items.popleft()
            n, b = _weight(item)
            self.lines -= n
            self.nbytes -= b
            self._cond.notify_all()
            return item


@dataclass
class _Pending:
    lines: list[Line] = field(default_factory=list)
    positions: dict[str, Position] = field(default_factory=dict)
    rotations: dict[str, int] = field(default_factory=dict)
    gaps: list[ReadGap] = field(default_factory=list)
    states: list[SourceState] = field(default_factory=list)
    barriers: list[Barrier] = field(default_factory=list)
    nbytes: int = 0
    stop: bool = False
    first_at: float = 0.0  # monotonic time the oldest chunk was queued... or taken

    def add(self, item: QueueItem) -> None:
        if isinstance(item, Chunk):
            self.lines.extend(item.lines)
            self.positions[item.position.file_id] = item.position
            self.nbytes += item.nbytes
            if item.rotations:
                self.rotations[item.source] = self.rotations.get(item.source, 0) + item.rotations
            self.gaps.extend(item.gaps)
        elif isinstance(item, SourceState):
            self.states.append(item)
        elif isinstance(item, Barrier):
            self.barriers.append(item)
        else:
            self.stop = True

    @property
    def empty(self) -> bool:
        return not (self.lines or self.positions or self.states)


@dataclass(frozen=True, slots=True)
class _Submitted:
    """A batch's lines, sent to the decode workers in parts."""

    worker: DecodePool
    parts: list[list[Line]]


def _close_quietly(worker: DecodePool) -> None:
    try:
        worker.close()
    except (OSError, ValueError) as exc:  # already dead
        log.debug("closing the decode worker: %s", exc)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Writer:
    """Owns the store (in its own thread) and the pipeline; ``run()`` until a ``Stop``."""

    def __init__(
        self,
        db_path: Path,
        queue: BoundedQueue,
        metrics: Metrics,
        *,
        batch_lines: int,
        batch_seconds: float,
        decode_worker: bool = False,
        decode_workers: int = 1,
        max_line: int = 65536,
    ) -> None:
        self.db_path = db_path
        self.queue = queue
        self.metrics = metrics
        self.batch_lines = batch_lines
        self.batch_seconds = batch_seconds
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="store")
        # Detection runs in a thread of its own, so a batch is detected while the one
        # before is written (SQLite works without the GIL); each executor keeps its order.
        self._pipe_executor = ThreadPoolExecutor(1, thread_name_prefix="pipeline")
        self._store: Store | None = None
        self.pipeline: Pipeline | None = None
        self.heartbeat = time.monotonic()
        self.failing: str | None = None  # the store error being retried, for STATUS=
        self.give_up_at: float | None = None  # set on shutdown: stop retrying after this
        self.batch_estimate = 0.0  # seconds a batch takes (a slowly decaying maximum)
        self._snapshot_at = 0.0  # monotonic time of the last detector snapshot
        self.use_worker = decode_worker
        self.workers = decode_workers  # processes in the pool, when ``use_worker``
        self.max_line = max_line
        self._worker: DecodePool | None = None  # used from the store thread only
        self._worker_retry_at = 0.0

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the writer is not started")
        return self._store

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the store thread (serialized with every write)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args))

    async def exclusive(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the store thread while no batch is being processed (to
        swap the pipeline: every batch queued before runs on the old one, every later
        batch on the new one)."""
        loop = asyncio.get_running_loop()
        entered: asyncio.Future[None] = loop.create_future()
        release = threading.Event()

        def hold() -> None:
            loop.call_soon_threadsafe(_resolve, entered)
            release.wait()

        held = loop.run_in_executor(self._pipe_executor, hold)
        try:
            await entered
            return await self.call(fn, *args)
        finally:
            release.set()
            await held

    async def open(self) -> Store:
        self._store = await self.call(Store.open, self.db_path)
        return self._store

    async def close(self) -> None:
        if self._worker is not None:
            await self.call(self._drop_worker)
        if self._store is not None:
            store, self._store = self._store, None
            try:
                await self.call(store.close)
            except (StoreError, OSError, sqlite3.Error) as exc:  # best effort at exit
                log.warning("closing the store: %s", exc)
        self._executor.shutdown(wait=False)
        self._pipe_executor.shutdown(wait=False)

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        # The commit of one batch runs while the next is collected and sent to the decode
        # worker; commits stay in order and one at a time (a batch commits only after the
        # one before it did), so positions never skip lines.
        committing: asyncio.Task[bool] | None = None
        try:
            while True:
                if self.give_up_at is not None and (
                    time.monotonic() + self.batch_estimate > self.give_up_at
                ):
                    # Shutting down with more queued than can be committed in time: stop
                    # here; the rest is read again at the next start.
                    if committing is not None:
                        await committing
                    log.info("stopping with %d lines queued, not committed", self.queue.lines)
                    return
                pending = await self._collect()
                if not pending.empty:
                    submitted = self._submit(pending)
                    # Detection of this batch starts now, beside the write of the last one.
                    processing = asyncio.get_running_loop().run_in_executor(
                        self._pipe_executor, partial(self._process, pending, submitted)
                    )
                    if committing is not None and not await committing:
                        return
                    committing = asyncio.create_task(self._commit_or_give_up(pending, processing))
                if pending.barriers or pending.stop:
                    if committing is not None:
                        task, committing = committing, None
                        if not await task:
                            return
                    for b in pending.barriers:
                        if not b.done.done():
                            b.done.set_result(None)
                if pending.stop:
                    return
        finally:
            if committing is not None and not committing.done():
                committing.cancel()

    async def _commit_or_give_up(self, pending: _Pending, processing: Awaitable[Batch]) -> bool:
        """False when the store kept failing past the shutdown deadline."""
        try:
            await self._commit(pending, processing)
        except _GiveUp:
            return False
        return True

    async def _collect(self) -> _Pending:
        pending = _Pending()
        loop = asyncio.get_running_loop()
        while True:
            self.heartbeat = time.monotonic()
            item = await self.queue.get(within=1.0)
            if item is not None:
                break
        pending.add(item)
        # Group commit: take what is queued; wait briefly for more only while chunks keep
        # coming, and never past batch_seconds. A lone line commits at once; under load
        # the batch grows while the previous commit runs, up to batch_lines.
        deadline = loop.time() + self.batch_seconds
        while (
            len(pending.lines) < self.batch_lines
            and pending.nbytes < BATCH_BYTES
            and not pending.stop
            and not pending.barriers
        ):
            left = deadline - loop.time()
            if left <= 0:
                break
            nxt = await self.queue.get(within=min(left, LINGER))
            if nxt is None:
                break
            pending.add(nxt)
        return pending

    async def _commit(self, pending: _Pending, processing: Awaitable[Batch]) -> None:
        started = time.monotonic()
        batch = await processing
        delay = 0.5
        while True:
            self.heartbeat = time.monotonic()
            try:
                await self.call(write_batch, self.store, batch)
                break
            except StoreError as exc:
                self.metrics.commit_failures += 1
                if self.failing != str(exc):
                    log.error("%s; keeping the batch and retrying", exc)
                self.failing = str(exc)
            if self.give_up_at is not None and time.monotonic() + delay > self.give_up_at:
                log.error(
                    "giving up on %d lines not committed; they are read again at the next start",
                    len(pending.lines),
                )
                raise _GiveUp
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)
        if self.failing is not None:
            log.info("the store accepts writes again")
            self.failing = None
        took = time.monotonic() - started
        self.batch_estimate = max(took, self.batch_estimate * 0.9)
        self.metrics.record_batch(batch, took)
        for st in pending.states:
            try:
                await self.call(self.store.set_source_error, st.source, st.error)
            except StoreError as exc:
                log.warning("cannot record the state of source %s: %s", st.source, exc)

    def _process(self, pending: _Pending, submitted: _Submitted | None = None) -> Batch:
        """In the pipeline thread: lines -> batch, with this batch's rotation counts and
        read gaps (they commit with the positions that step past them).

        The detector's state goes with a batch at most every ``SNAPSHOT_EVERY`` seconds
        (and always before a reload, a restart of a source, or the stop): a snapshot costs
        time in proportion to the windows held, so one per batch would bound the rate.
        After a SIGKILL the windows resume from at most that long before the positions;
        events and positions themselves are always exact.
        """
        if self.pipeline is None:
            raise RuntimeError("no pipeline")
        now = time.monotonic()
        due = (
            pending.stop
            or bool(pending.barriers)
            or self.give_up_at is not None
            or now - self._snapshot_at >= SNAPSHOT_EVERY
        )
        positions = list(pending.positions.values())
        if submitted is None:
            batch = self.pipeline.process(pending.lines, positions, snapshot=due)
        else:
            batch = self._process_remote(submitted, positions, due)
        if due:
            self._snapshot_at = now
        for source, n in pending.rotations.items():
            batch.counter(source).rotations += n
        batch.read_gaps.extend(pending.gaps)
        return batch

    # -- decoding in a second process -----------------------------------------------------

    def _decode_worker(self) -> DecodePool | None:
        """The decode worker (started on first use), or None to decode in this process.

        Once started, every batch goes through it, small ones too: a source's decoder
        keeps per-file state (``auto``'s choice, W3C columns) that must live in one place.
        Called from the event loop; a worker is closed in the store thread (``_retire``).
        """
        setup = self.pipeline.setup if self.pipeline is not None else None
        if not self.use_worker or setup is None:
            return None
        if self._worker is not None and self._worker.key != setup.key:
            self._retire(self._worker)
        if self._worker is None:
            if time.monotonic() < self._worker_retry_at:
                return None
            try:
                self._worker = DecodePool(setup.key, self.max_line, self.workers)
            except OSError as exc:
                log.warning("cannot start the decode worker (%s); decoding in this process", exc)
                self._worker_retry_at = time.monotonic() + WORKER_RETRY
                return None
        return self._worker

    def _retire(self, worker: DecodePool, *, failed: bool = False) -> None:
        """Stop using ``worker``; it is closed in the store thread, after the batches
        already given to it (their parts not yet received are then decoded here)."""
        if self._worker is worker:
            self._worker = None
            if failed:
                self._worker_retry_at = time.monotonic() + WORKER_RETRY
        try:
            self._executor.submit(_close_quietly, worker)
        except RuntimeError:  # the executor is shut down: closing at exit
            _close_quietly(worker)

    def _drop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            _close_quietly(worker)

    def _submit(self, pending: _Pending) -> _Submitted | None:
        """Send the batch's lines to the decode worker now (event loop), so they are
        decoded while the batch before is detected and committed. None: decode here."""
        worker = self._decode_worker() if pending.lines else None
        if worker is None or self.pipeline is None or self.pipeline.setup is None:
            return None
        lines = pending.lines
        parts = [lines[i : i + WORKER_PART] for i in range(0, len(lines), WORKER_PART)]
        specs = self.pipeline.setup.specs
        try:
            worker.use_sieve(self.pipeline.setup.sieve)  # None without rules
            for part in parts:
                worker.send_lines(specs, part)
        except (WorkerError, OSError, ValueError) as exc:
            log.error("the decode worker failed (%s); decoding in this process", exc)
            self._retire(worker, failed=True)
            return None
        return _Submitted(worker, parts)

    def _process_remote(self, submitted: _Submitted, positions: list[Position], due: bool) -> Batch:
        """``Pipeline.process`` with the parts decoded by the worker, received in order."""
        pipeline = self.pipeline
        assert pipeline is not None
        worker, parts = submitted.worker, submitted.parts
        batch = Batch(positions=positions)
        done = 0
        try:
            while done < len(parts):
                part = worker.receive().batch
                pipeline.detect(part, snapshot=False)
                part.drop_events()  # the store needs only its rows (events built on demand)
                merge(batch, part)
                done += 1
        except WorkerError as exc:
            # Parts not received yet were not detected either: decode them here.
            log.error("%s; decoding in this process", exc)
            self._retire(worker, failed=True)
            for rest in parts[done:]:
                part = pipeline.process(rest, snapshot=False)
                part.packed = serialize_events(part.events, part.event_ms)
                merge(batch, part)
        if due and pipeline.detector is not None:
            batch.detector_state = pipeline.detector.snapshot()
        return batch

    async def stop(self, task: asyncio.Task[None], deadline: float) -> bool:
        """Queue ``Stop``, wait for the writer to commit what is queued, by ``deadline``.

        Returns False when the deadline passed first; what was not committed is read
        again at the next start (positions commit with their events).
        """
        self.give_up_at = deadline - STOP_MARGIN
        await self.queue.put(Stop(), force=True)
        try:
            await asyncio.wait_for(asyncio.shield(task), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            task.cancel()
            return False
        return self.failing is None


class _GiveUp(Exception):
    """The store kept failing past the shutdown deadline."""
