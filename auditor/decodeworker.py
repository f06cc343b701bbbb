"""A second process that splits, decodes and packs lines while this one detects and stores.

One Python thread can parse, redact, detect and store about 30,000 lines a second; the
machine has more cores than that. Decoding keeps no state across lines except per file
(the line splitter, a detected format), so one worker process that sees every chunk of
every file in order can do it, while detection, which needs every event in log order,
stays here. Chunks go out as raw bytes; the worker sends back per chunk the decoded
events (pickled: each distinct timestamp object is shared, so pickled once), the counters
and aggregates, and the events already serialized into store blocks.

Only ``scan`` of large inputs uses it (``PARALLEL_MIN_BYTES``): starting a process costs a
few hundred milliseconds.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading
import time
from array import array
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from typing import Any

import orjson

from auditor.errors import AuditorError
from auditor.formats import FormatSpec, build_decoder
from auditor.formats.event import _Draft
from auditor.formats.registry import parser_for
from auditor.formats.w3c import W3cParser
from auditor.gctune import tune_for_ingest
from auditor.lines import LineSplitter, flatten_lines, unflatten_lines
from auditor.model import Event, Exposure, Line
from auditor.pipeline import Batch, Decoder, Pipeline
from auditor.redact import Redactor
from auditor.store.eventblocks import Block, serialize_events

PARALLEL_MIN_BYTES = 32 * 1024 * 1024
MORE, END_PLAIN, END_COMPRESSED = 0, 1, 2
PARENT_CHECK = 2.0  # seconds between checks that the parent still lives
LINES = "\x00lines"  # a message of already split lines (the daemon's), not of raw bytes


class WorkerError(AuditorError):
    """The decode worker failed or died; the scan stops with what was committed."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """What the worker sends back for one chunk of one file."""

    batch: Batch  # events as rows (see ``_rebuild``), counters, aggregates, serialized blocks
    offset: int  # the file offset just after the last complete line seen so far
    pending: bool  # a partial last line waits


def _serve(tasks: Queue[Any], conn: Connection, key: bytes, max_line: int, parent: int) -> None:
    """The worker's loop (runs in the child process); ``parent``: the parent's pid."""
    # Ctrl-C reaches the terminal's whole process group: the parent, which stops this
    # worker itself once its last batch is decoded, decides (no traceback from here).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    redactor = Redactor(key)
    decoders: dict[str, Decoder] = {}
    specs: dict[str, FormatSpec] = {}
    pipeline = Pipeline(decoders, None)
    splitters: dict[str, LineSplitter] = {}
    tune_for_ingest()

    def use(source: str, spec: FormatSpec) -> None:
        if specs.get(source) != spec:
            specs[source] = spec
            decoders[source] = build_decoder(spec, redactor, source)

    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    while True:
        try:
            msg = tasks.get()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        if msg[0] == LINES:
            _, source_specs, runs = msg
            for source, spec in source_specs.items():
                use(source, spec)
            _reply(conn, pipeline.decode(unflatten_lines(runs)), 0, False)
            continue
        file_id, source, spec, path, offset, data, end = msg
        use(source, spec)
        sp = splitters.get(file_id)
        if sp is None:
            sp = splitters[file_id] = LineSplitter(source, path, offset, max_line)
        lines = sp.feed(data)
        if end == END_COMPRESSED and sp.pending:
            lines.extend(sp.feed(b"\n"))  # a finished compressed file: its last line is whole
        batch = pipeline.decode(lines)
        if end != MORE or sp.idle:
            # Between whole lines a splitter holds nothing: the file's next chunk may go to
            # another worker of the pool, which starts a splitter at that chunk's offset.
            del splitters[file_id]
        _reply(conn, batch, sp.offset, bool(sp.pending))


def _exit_with_parent(parent: int) -> None:
    """A killed parent never says goodbye, and a read of a message it was writing when it
    died would wait forever (this process holds the queue's write end too, so no
    end-of-file comes): exit as soon as the parent is gone, wherever the loop is."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK)
    os._exit(0)


def _reply(conn: Connection, batch: Batch, offset: int, pending: bool) -> None:
    """Send one decoded chunk back, its events serialized into store blocks."""
    batch.packed = serialize_events(batch.events, batch.event_ms)
    # The parent rebuilds the events from the rows as serialized for the store (one
    # serialisation, not two; the store compresses them, in a thread of the parent where
    # zlib runs without the GIL); only the exact timestamps travel beside them, each
    # distinct one once.
    stamps, index = _stamps(batch.events)
    batch.dropped = len(batch.events)  # until the parent rebuilds them
    batch.events = []
    batch.event_ms = []
    try:
        conn.send_bytes(
            pickle.dumps((batch, stamps, index, offset, pending), protocol=pickle.HIGHEST_PROTOCOL)
        )
    except (BrokenPipeError, ConnectionResetError):  # the parent is gone
        raise SystemExit(0) from None


def _stamps(events: list[Event]) -> tuple[list[datetime], array[int]]:
    """The distinct timestamp objects, and each event's index into them."""
    seen: dict[int, int] = {}
    stamps: list[datetime] = []
    index: array[int] = array("I")
    for e in events:
        ts = e.timestamp
        i = seen.get(id(ts))
        if i is None:
            i = seen[id(ts)] = len(stamps)
            stamps.append(ts)
        index.append(i)
    return stamps, index


def _rebuild(blocks: list[Block], stamps: list[datetime], index: array[int]) -> list[Event]:
    """Events from the serialized store rows, with their exact timestamps."""
    draft = _Draft
    out: list[Event] = []
    k = 0
    for block in blocks:
        for row in orjson.loads(block.data):
            row[0] = stamps[index[k]]
            k += 1
            expo = row[25]
            row[25] = tuple(Exposure(**x) for x in expo) if expo else ()
            out.append(draft(*row))  # type: ignore[arg-type]
    return out


class DecodeWorker:
    """The parent's handle: ``send`` chunks in file order, ``receive`` their results in the
    same order. Keep a few chunks in flight so both processes stay busy."""

    def __init__(self, key: bytes, max_line: int) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        # Chunks go through a queue (its feeder thread writes), results come back on a
        # pipe: a send never waits on a receive, so the two processes cannot deadlock.
        self._tasks: Queue[Any] = ctx.Queue()
        self._conn, child = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_serve, args=(self._tasks, child, key, max_line, os.getpid()), daemon=True
        )
        self._proc.start()
        child.close()
        self.key = key
        self.in_flight = 0

    def send(
        self,
        file_id: str,
        source: str,
        spec: FormatSpec,
        path: str,
        offset: int,
        data: bytes,
        end: int = MORE,
    ) -> None:
        """``offset``: where ``data`` starts in the file (used when this worker holds no
        partial line of the file); ``end``: MORE, END_PLAIN or END_COMPRESSED (complete an
        unterminated last line)."""
        if not self._proc.is_alive():
            raise WorkerError(f"the decode worker died (exit code {self._proc.exitcode})")
        self._tasks.put((file_id, source, spec, path, offset, data, end))
        self.in_flight += 1

    def send_lines(self, specs: Mapping[str, FormatSpec], lines: Sequence[Line]) -> None:
        """Decode lines already split (the daemon's); ``specs``: the format of each source
        among them (a changed one rebuilds that source's decoder in the worker)."""
        if not self._proc.is_alive():
            raise WorkerError(f"the decode worker died (exit code {self._proc.exitcode})")
        wanted = {ln.source for ln in lines}
        self._tasks.put((LINES, {s: specs[s] for s in wanted if s in specs}, flatten_lines(lines)))
        self.in_flight += 1

    def receive(self, *, events: bool = True) -> Chunk:
        """The next result; ``events=False`` leaves its events unbuilt (as rows in
        ``packed``, counted in ``dropped``): a scan without rules never needs them."""
        try:
            raw = self._conn.recv_bytes()
        except (OSError, EOFError):
            code = self._proc.exitcode
            raise WorkerError(f"the decode worker died (exit code {code})") from None
        self.in_flight -= 1
        batch, stamps, index, offset, pending = pickle.loads(raw)
        if events:
            batch.events = _rebuild(batch.packed or [], stamps, index)
            batch.dropped = 0
        return Chunk(batch, offset, pending)

    def close(self, timeout: float = 2.0) -> None:
        """Ask the worker to finish; kill it if it has not within ``timeout`` seconds (it
        keeps nothing worth waiting for: it may be blocked sending results nobody reads)."""
        if self._proc.is_alive():
            try:
                self._tasks.put(None)
            except ValueError:  # closed already
                pass
            self._proc.join(timeout=timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        # The worker is gone: chunks still buffered for it are dropped, not flushed (the
        # queue's pipe has a reader in this process too, so a flush could wait forever).
        self._tasks.cancel_join_thread()
        self._tasks.close()
        self._conn.close()


def pool_size(cpus: int | None) -> int:
    """Decode workers for a scan: one per core, at most four. On two cores the two workers
    and this process share them; the scheduler keeps both cores busy, where with one
    worker each process waits for the other part of the time."""
    return max(1, min(cpus or 1, 4))


def spreadable(spec: FormatSpec) -> bool:
    """Whether a file's lines decode alike whichever worker reads them: not ``auto`` (it
    chooses from a file's first lines and keeps the choice) and not W3C (a ``#Fields:``
    header names the columns of the lines after it). A bad spec is not: it fails where
    decoders are built."""
    try:
        parser = parser_for(spec)
    except AuditorError:
        return False
    return parser is not None and not isinstance(parser, W3cParser)


class DecodePool:
    """``n`` decode workers, used like one ``DecodeWorker``: results come back in the
    order the work was sent.

    A scan spreads the chunks of one file over the workers itself (cut at line ends, see
    ``auditor.scanfiles.scan_file_parallel``). ``send_lines`` (the daemon's parts of
    already split lines) sends a part to the next worker in turn when every source in it
    is ``spreadable``, and otherwise to the first worker, where every part of such a
    source goes, so its per-file state (``auto``'s choice, W3C columns) lives in one place.
    ``send_lines`` and ``receive`` may run in different threads (one each)."""

    def __init__(self, key: bytes, max_line: int, n: int = 1) -> None:
        self.key = key
        self.workers: list[DecodeWorker] = []
        self._order: deque[DecodeWorker] = deque()
        self._turn = 0
        self._spread: dict[str, tuple[FormatSpec, bool]] = {}
        try:
            for _ in range(max(1, n)):
                self.workers.append(DecodeWorker(key, max_line))
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self.workers)

    @property
    def in_flight(self) -> int:
        return sum(w.in_flight for w in self.workers)

    def _spreadable(self, source: str, spec: FormatSpec) -> bool:
        known = self._spread.get(source)
        if known is None or known[0] != spec:
            known = self._spread[source] = (spec, spreadable(spec))
        return known[1]

    def send_lines(self, specs: Mapping[str, FormatSpec], lines: Sequence[Line]) -> None:
        """``DecodeWorker.send_lines`` on the worker whose turn it is (see the class)."""
        worker = self.workers[0]
        if len(self.workers) > 1:
            sources = {ln.source for ln in lines}
            if all(s in specs and self._spreadable(s, specs[s]) for s in sources):
                worker = self.workers[self._turn]
                self._turn = (self._turn + 1) % len(self.workers)
        worker.send_lines(specs, lines)
        self._order.append(worker)

    def receive(self) -> Chunk:
        """The result of the oldest part sent with ``send_lines``."""
        return self._order.popleft().receive()

    def close(self, timeout: float = 2.0) -> None:
        for w in self.workers:
            w.close(timeout)
