"""A second process that splits, decodes and packs lines while this one detects and stores.

One Python thread can parse, redact, detect and store about 30,000 lines a second; the
machine has more cores than that. Decoding keeps no state across lines except per file
(the line splitter, a detected format), so one worker process that sees every chunk of
every file in order can do it, while detection, which needs every event in log order,
stays here. Chunks go out as raw bytes; the worker sends back per chunk the decoded
events (pickled: each distinct timestamp object is shared, so pickled once), the counters
and aggregates, and the events already packed into store blocks.

Only ``scan`` of large inputs uses it (``PARALLEL_MIN_BYTES``): starting a process costs a
few hundred milliseconds.
"""

from __future__ import annotations

import multiprocessing
import pickle
from array import array
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from typing import Any

from auditor.errors import AuditorError
from auditor.formats import FormatSpec, build_decoder
from auditor.formats.event import _Draft
from auditor.gctune import tune_for_ingest
from auditor.lines import LineSplitter
from auditor.model import Event, Exposure
from auditor.pipeline import Batch, Decoder, Pipeline
from auditor.redact import Redactor
from auditor.store.eventblocks import Block, pack_events, unpack

PARALLEL_MIN_BYTES = 32 * 1024 * 1024
MORE, END_PLAIN, END_COMPRESSED = 0, 1, 2


class WorkerError(AuditorError):
    """The decode worker failed or died; the scan stops with what was committed."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """What the worker sends back for one chunk of one file."""

    batch: Batch  # events as rows (see ``_rebuild``), counters, aggregates, packed blocks
    offset: int  # the file offset just after the last complete line seen so far
    pending: bool  # a partial last line waits


def _serve(tasks: Queue[Any], conn: Connection, key: bytes, max_line: int) -> None:
    """The worker's loop (runs in the child process)."""
    redactor = Redactor(key)
    decoders: dict[str, Decoder] = {}
    specs: dict[str, FormatSpec] = {}
    pipeline = Pipeline(decoders, None)
    splitters: dict[str, LineSplitter] = {}
    tune_for_ingest()
    while True:
        msg = tasks.get()
        if msg is None:
            return
        file_id, source, spec, path, offset, data, end = msg
        if specs.get(source) != spec:
            specs[source] = spec
            decoders[source] = build_decoder(spec, redactor, source)
        sp = splitters.get(file_id)
        if sp is None:
            sp = splitters[file_id] = LineSplitter(source, path, offset, max_line)
        lines = sp.feed(data)
        if end == END_COMPRESSED and sp.pending:
            lines.extend(sp.feed(b"\n"))  # a finished compressed file: its last line is whole
        batch = pipeline.decode(lines)
        batch.packed = pack_events(batch.events, batch.event_ms)
        # The parent rebuilds the events from the packed rows (one serialisation, not two);
        # only the exact timestamps travel beside them, each distinct one once.
        stamps, index = _stamps(batch.events)
        batch.events = []
        pending = sp.pending
        if end != MORE:
            del splitters[file_id]
        conn.send_bytes(
            pickle.dumps(
                (batch, stamps, index, sp.offset, pending), protocol=pickle.HIGHEST_PROTOCOL
            )
        )


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


def _rebuild(packed: list[Block], stamps: list[datetime], index: array[int]) -> list[Event]:
    """Events from the packed store rows, with their exact timestamps."""
    draft = _Draft
    out: list[Event] = []
    k = 0
    for block in packed:
        for row in unpack(block.data):
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
            target=_serve, args=(self._tasks, child, key, max_line), daemon=True
        )
        self._proc.start()
        child.close()
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
        """``offset``: where ``data`` starts in the file (used for a file's first chunk);
        ``end``: MORE, END_PLAIN or END_COMPRESSED (complete an unterminated last line)."""
        if not self._proc.is_alive():
            raise WorkerError(f"the decode worker died (exit code {self._proc.exitcode})")
        self._tasks.put((file_id, source, spec, path, offset, data, end))
        self.in_flight += 1

    def receive(self) -> Chunk:
        try:
            raw = self._conn.recv_bytes()
        except (OSError, EOFError):
            code = self._proc.exitcode
            raise WorkerError(f"the decode worker died (exit code {code})") from None
        self.in_flight -= 1
        batch, stamps, index, offset, pending = pickle.loads(raw)
        batch.events = _rebuild(batch.packed, stamps, index)
        return Chunk(batch, offset, pending)

    def close(self) -> None:
        self._tasks.put(None)
        self._tasks.close()
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()
        self._tasks.join_thread()
