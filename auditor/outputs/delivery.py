"""One output's delivery loop: read pending findings, send them, commit the cursor.

It runs as its own asyncio task with its own store connection, and every blocking step
(SQLite, sockets, files, HTTP) runs in a worker thread, so a slow or dead receiver never
holds up tailing or the writer: findings simply wait in the store, and the cursor lags.

Exactly once, per output: a finding is sent when it first appears (later count updates
of the same finding are not sent again) and the cursor moves past it in the transaction
that records the delivery. The one window for a repeat is a crash (SIGKILL, power)
between the receiver's acknowledgement and that commit; webhook receivers can drop such
a repeat by its ``X-Log-Auditor-Finding-Id``. On SIGTERM the batch in flight finishes and
is committed before the task ends.

Bounded: when more than ``max_queue`` selected findings wait, the oldest are skipped;
the loss is counted (``dropped``), journalled and logged, never silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from auditor.config import OutputConfig
from auditor.errors import StoreError
from auditor.export import serialize_finding
from auditor.export.native import finding_native
from auditor.model import Severity
from auditor.outputs.sink import DeliveryError, Item, Sink
from auditor.store import Store
from auditor.store.outputs import (
    Selection,
    ensure_cursor,
    read_pending,
    record_delivery,
    record_failure,
    skip_oldest,
)

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # how often an idle output looks for new findings

RuleLookup = Callable[[], Mapping[str, object]]


@dataclass
class OutputStats:
    """This process's counters for one output (the lasting totals are in the store)."""

    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    pending: int = 0
    up: bool = True
    last_error: str | None = None


class _Step(enum.Enum):
    IDLE = "idle"  # nothing pending
    MORE = "more"  # a full batch went out; more may be waiting


def backoff(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: half fixed, half random (never all at once)."""
    delay = min(cap, initial * 2.0 ** min(attempt - 1, 30))
    return delay / 2 + rng.uniform(0, delay / 2)


def selection(out: OutputConfig) -> Selection:
    return Selection(int(Severity.parse(out.min_severity)), out.categories)


class OutputRunner:
    def __init__(
        self,
        out: OutputConfig,
        db_path: Path,
        sink: Sink,
        rules: RuleLookup | None = None,
        *,
        poll: float = POLL_SECONDS,
        step_lock: threading.Lock | None = None,
    ) -> None:
        """``step_lock``: shared by the runners of one output one after the other (see
        ``_step``)."""
        self.out = out
        self.db_path = db_path
        self.sink = sink
        self.rules = rules or dict
        self.poll = poll
        self.stats = OutputStats()
        self.selection = selection(out)
        self._rng = random.Random()
        self._shape_failed = False
        # A cancelled await leaves its worker thread running (a receiver that hangs): the
        # close is then left to that step, so stopping never waits for the receiver.
        self._state = threading.Lock()
        self._in_step = False
        self._close_requested = False
        self._store: Store | None = None
        self._step_lock = step_lock or threading.Lock()

    async def run(self, stop: asyncio.Event, *, drain: bool = False) -> None:
        """Deliver until ``stop`` is set; the step in flight always completes first.

        With ``drain`` (``run --once``), also return once nothing is pending.
        """
        attempt = 0
        with self._state:
            self._close_requested = False
        try:
            while not stop.is_set():
                try:
                    step = await in_daemon_thread(self._step, f"output:{self.out.name}")
                except DeliveryError as exc:
                    attempt += 1
                    self._failed(str(exc), attempt)
                    await sleep_unless_stopped(stop, backoff(attempt, *self._retry, self._rng))
                    continue
                except (StoreError, sqlite3.Error) as exc:
                    attempt += 1
                    self._failed(f"store: {exc}", attempt)
                    await sleep_unless_stopped(stop, backoff(attempt, *self._retry, self._rng))
                    continue
                if attempt:
                    log.info("output %s: delivering again", self.out.name)
                    attempt = 0
                self.stats.up, self.stats.last_error = True, None
                if step is _Step.IDLE:
                    if drain:
                        return
                    await sleep_unless_stopped(stop, self.poll)
        finally:
            self._close()

    @property
    def _retry(self) -> tuple[float, float]:
        return self.out.retry_initial, self.out.retry_max

    def _failed(self, reason: str, attempt: int) -> None:
        self.stats.failed += 1
        self.stats.up = False
        if attempt == 1 or reason != self.stats.last_error:
            log.error(
                "output %s: %s; %d findings wait in the store, retrying",
                self.out.name,
                reason,
                self.stats.pending,
            )
        self.stats.last_error = reason

    # -- in a worker thread --------------------------------------------------------------

    def _open(self) -> Store:
        store = self._store = Store.open(self.db_path, check_same_thread=False)
        ensure_cursor(store, self.out.name, self.out.start)
        return store

    def _close(self) -> None:
        """Close the sink and the store now, or when the step in flight ends."""
        with self._state:
            self._close_requested = True
            if not self._in_step:
                self._close_now()

    def _close_now(self) -> None:
        self.sink.close()
        if self._store is not None:
            store, self._store = self._store, None
            store.close()

    def _step(self) -> _Step:
        """One round (opening the store first if needed); closes after it if asked to.

        One round of an output at a time, also across a reload: a round that outlasted
        the reload's wait still runs in its thread, and the next runner reading the
        cursor before that round moved it would send the same findings again.
        """
        with self._step_lock:
            return self._locked_step()

    def _locked_step(self) -> _Step:
        with self._state:
            if self._close_requested:
                return _Step.IDLE
            self._in_step = True
        try:
            return self._deliver(self._store or self._open())
        finally:
            with self._state:
                self._in_step = False
                if self._close_requested:
                    self._close_now()

    def _deliver(self, store: Store) -> _Step:
        name, limit, bound = self.out.name, self.sink.batch_size, self.out.max_queue
        p = read_pending(store, name, self.selection, limit, bound + 1)
        if p.pending > bound:
            n = skip_oldest(store, name, self.selection, self.out.max_queue)
            self.stats.dropped += n
            log.warning(
                "output %s: %d findings skipped: more than max_queue = %d were waiting",
                name,
                n,
                self.out.max_queue,
            )
            p = read_pending(store, name, self.selection, limit, bound + 1)
        self.stats.pending = p.pending
        if not p.rows:
            if p.top_rowid > p.last_rowid:  # only findings this output does not take
                record_delivery(store, name, p.top_rowid, 0, 0)
            return _Step.IDLE
        items = [Item(row, self._encode(row)) for _, row in p.rows]
        try:
            self.sink.send(items)
        except DeliveryError as exc:
            left = p.pending - exc.sent
            if exc.sent:
                record_delivery(store, name, p.rows[exc.sent - 1][0], exc.sent, left)
                self.stats.delivered += exc.sent
            self.stats.pending = left
            record_failure(store, name, str(exc), left)
            raise
        last = p.top_rowid if p.complete else p.rows[-1][0]
        left = p.pending - len(items)
        record_delivery(store, name, last, len(items), left)
        self.stats.delivered += len(items)
        self.stats.pending = left
        return _Step.IDLE if p.complete else _Step.MORE

    def _encode(self, row: dict[str, Any]) -> bytes:
        rule = self.rules().get(str(row["rule_id"]))
        try:
            return orjson.dumps(serialize_finding(row, self.out.shape, rule))
        except Exception:
            # A shape that cannot take this finding must not hold the queue: send the
            # native JSON (CONTRACT.md) and say so once.
            if not self._shape_failed:
                log.exception(
                    "output %s: cannot shape a finding as %s; sending native JSON",
                    self.out.name,
                    self.out.shape,
                )
                self._shape_failed = True
            return orjson.dumps(finding_native(row))


T = TypeVar("T")


async def in_daemon_thread(fn: Callable[[], T], name: str) -> T:
    """``fn()`` in a daemon thread of its own.

    Not ``asyncio.to_thread``: a receiver that hangs would hold a worker of the default
    executor, which the interpreter joins at exit, so the daemon could not stop within
    its few seconds. A daemon thread is simply left behind at exit.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not fut.done():  # not if the awaiting task was cancelled (stopping)
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def work() -> None:
        try:
            result: Any = fn()
            ok = True
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting task, as to_thread does
            result, ok = exc, False
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, ok, result)

    threading.Thread(target=work, name=name, daemon=True).start()
    return await fut


async def sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake at once when stopping.

    asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel that comes in the
    loop turn in which ``stop`` is set (CPython gh-86296), and the task then goes on.
    """
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass
