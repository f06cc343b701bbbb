"""The heart: a batch of lines → a batch of redacted events, hits and counters. No I/O.

The daemon calls ``Pipeline.process`` per batch of tailed lines and ``scan`` per chunk of a
file, so a backfill runs the same code as live tailing. The result is written by
``Store.write`` in one transaction, positions included.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from io import BytesIO
from itertools import repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Protocol

from auditor.formats.w3c import is_directive
from auditor.model import Event, Exposure, Hit, Line
from auditor.readgap import ReadGap

if TYPE_CHECKING:  # the store package imports this module
    from auditor.config import RuleOverride
    from auditor.formats.spec import FormatSpec, RawDecode
    from auditor.packedevents import Packed
    from auditor.store.eventblocks import Block

Decoder = Callable[[Line], Event | None]


class Detector(Protocol):
    """What the pipeline needs of the detection engine (see ``auditor.detect``)."""

    def observe(self, event: Event) -> list[Hit]: ...

    def observe_many(self, events: Sequence[Event], marks: Marks | None = None) -> list[Hit]: ...

    def snapshot(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Marks:
    """The detector's sieve run where a batch was decoded (``auditor.decodeworker``): the
    indexes, in order, of the events that may pass a rule gate or interest a per-event
    detector, and of those the URL gates may pass (see ``auditor.detectors.sieve``).
    ``token`` names the rules that sieved them (``SieveRules.token``)."""

    suspects: array[int]
    url: array[int]
    count: int  # events sieved
    token: str


@dataclass(frozen=True, slots=True)
class Position:
    """Where reading of one file stopped; committed with the events it covers."""

    file_id: str  # stable identity: fingerprint of the first line (see auditor.fileid)
    source: str
    path: str
    dev: int
    inode: int
    offset: int  # byte offset just after the last complete line processed
    size: int = 0  # file size seen when reading stopped (lag = size - offset)


@dataclass(slots=True)
class SourceCounters:
    """Per-source deltas for one batch; the store adds them to its running totals."""

    lines_read: int = 0
    lines_parsed: int = 0
    lines_unparsed: int = 0
    lines_truncated: int = 0
    bytes_read: int = 0
    rotations: int = 0
    first_event_ms: int | None = None
    last_event_ms: int | None = None
    last_unparsed: str | None = None  # "file:offset: reason", for status

    def add(self, other: SourceCounters) -> None:
        """Fold a later batch's deltas of the same source into these."""
        self.lines_read += other.lines_read
        self.lines_parsed += other.lines_parsed
        self.lines_unparsed += other.lines_unparsed
        self.lines_truncated += other.lines_truncated
        self.bytes_read += other.bytes_read
        self.rotations += other.rotations
        for ms in (other.first_event_ms, other.last_event_ms):
            if ms is not None:
                self.add_event_time(ms)
        if other.last_unparsed is not None:
            self.last_unparsed = other.last_unparsed

    def add_event_time(self, ms: int) -> None:
        if self.first_event_ms is None or ms < self.first_event_ms:
            self.first_event_ms = ms
        if self.last_event_ms is None or ms > self.last_event_ms:
            self.last_event_ms = ms


@dataclass(slots=True)
class MinuteStats:
    """Per (source, minute) aggregates, so reports never scan raw events."""

    requests: int = 0
    status_2xx: int = 0
    status_3xx: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    auth_failures: int = 0  # 401 and 403
    plain_http: int = 0
    bytes_out: int = 0

    def add(self, other: MinuteStats) -> None:
        self.requests += other.requests
        self.status_2xx += other.status_2xx
        self.status_3xx += other.status_3xx
        self.status_4xx += other.status_4xx
        self.status_5xx += other.status_5xx
        self.auth_failures += other.auth_failures
        self.plain_http += other.plain_http
        self.bytes_out += other.bytes_out


ExposureKey = tuple[str, str, str, str, str, str, str]
"""(UTC day, source, pii type, location, route, parameter or "", digest)."""

HourClients = tuple[int, dict[str, int]]
"""(epoch hour, {client IP: requests})."""


@dataclass(slots=True)
class Batch:
    events: list[Event] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)
    counters: dict[str, SourceCounters] = field(default_factory=dict)
    minutes: dict[tuple[str, int], MinuteStats] = field(default_factory=dict)
    # Requests per client IP of each epoch hour, in parts: one per hour of each decoded
    # stretch (a merge only puts parts together; the store keeps them as they are and
    # merges an hour's parts once the log has moved on: see Store._client_hours).
    client_hours: list[HourClients] = field(default_factory=list)
    detector_state: bytes | None = None
    event_ms: list[int] = field(default_factory=list)  # epoch ms of each event, same order
    # The events already serialized into store blocks (uncompressed: the store compresses
    # them), when another process did it (see auditor.decodeworker); else None and the
    # store serializes them.
    packed: list[Block] | None = None
    # What `--format auto` chose or switched to: (source, "fmt (n/m sample lines) in file"),
    # journalled by the writer as kind "format".
    format_choices: list[tuple[str, str]] = field(default_factory=list)
    # Data the tailer found lost before it was read, journalled with the batch's positions.
    read_gaps: list[ReadGap] = field(default_factory=list)
    # The events' exposures, counted per ExposureKey: [count, first ms, last ms]. None:
    # not aggregated (a batch made by hand); the store then counts them from ``events``.
    exposures: dict[ExposureKey, list[int]] | None = None
    # Events already detected and let go (``events`` emptied to free memory); their rows
    # are in ``packed``.
    dropped: int = 0
    # The sieve's verdict on ``events``, made by the decode worker (None: sieve here).
    marks: Marks | None = None
    # The events decoded straight into their store rows (``Pipeline.decode_whole_lines``):
    # ``events`` then builds them from these rows on demand, and the columns here are what
    # a sieve and the detectors read (see ``auditor.packedevents``).
    table: Packed | None = None

    @property
    def n_events(self) -> int:
        return len(self.events) + self.dropped

    def drop_events(self) -> None:
        """Let the detected events go: the store needs only their packed rows and the
        aggregates (a scan would otherwise hold two batches of event objects)."""
        if self.packed is None:
            raise ValueError("events not packed yet")
        if self.exposures is None:
            self.exposures = count_exposures(self.events, _times(self))
        self.dropped += len(self.events)
        self.events = []
        self.event_ms = []

    def counter(self, source: str) -> SourceCounters:
        c = self.counters.get(source)
        if c is None:
            c = self.counters[source] = SourceCounters()
        return c


def count_exposures(events: Sequence[Event], times: Sequence[int]) -> dict[ExposureKey, list[int]]:
    """The events' exposures per ``ExposureKey``: [count, first ms, last ms]."""
    return count_exposed(
        (e.timestamp, e.source, e.route, e.exposures, ms)
        for e, ms in zip(events, times, strict=True)
        if e.exposures
    )


def count_exposed(
    exposed: Iterable[tuple[datetime, str, str, tuple[Exposure, ...], int]],
) -> dict[ExposureKey, list[int]]:
    """``count_exposures`` of the events with exposures, each given as (timestamp,
    source, route, exposures, epoch ms)."""
    agg: dict[ExposureKey, list[int]] = {}
    for ts, source, route, exposures, ms in exposed:
        day = ts.strftime("%Y-%m-%d")
        for x in exposures:
            k = (day, source, x.pii_type, x.location, route, x.param or "", x.digest)
            cur = agg.get(k)
            if cur is None:
                agg[k] = [1, ms, ms]
            else:
                cur[0] += 1
                cur[1] = min(cur[1], ms)
                cur[2] = max(cur[2], ms)
    return agg


def _merge_exposures(
    into: dict[ExposureKey, list[int]], more: dict[ExposureKey, list[int]]
) -> None:
    for k, v in more.items():
        cur = into.get(k)
        if cur is None:
            into[k] = list(v)
        else:
            cur[0] += v[0]
            cur[1] = min(cur[1], v[1])
            cur[2] = max(cur[2], v[2])


def merge(into: Batch, part: Batch) -> None:
    """Add a later batch to an earlier one (both decoded, neither written yet)."""
    if part.exposures is not None or into.exposures is not None:
        if into.exposures is None:
            into.exposures = count_exposures(into.events, _times(into))
        more = part.exposures
        if more is None:
            more = count_exposures(part.events, _times(part))
        _merge_exposures(into.exposures, more)
    into.dropped += part.dropped
    into.events.extend(part.events)
    into.hits.extend(part.hits)
    into.event_ms.extend(part.event_ms)
    into.positions.extend(part.positions)
    into.format_choices.extend(part.format_choices)
    into.read_gaps.extend(part.read_gaps)
    if part.packed is not None:
        into.packed = (into.packed or []) + part.packed
    for src, c in part.counters.items():
        into.counter(src).add(c)
    for key, m in part.minutes.items():
        have = into.minutes.get(key)
        if have is None:
            into.minutes[key] = m
        else:
            have.add(m)
    into.client_hours.extend(part.client_hours)
    if part.detector_state is not None:
        into.detector_state = part.detector_state
    into.marks = None  # marks index one part's events


def _times(batch: Batch) -> list[int]:
    times = batch.event_ms
    return times if len(times) == len(batch.events) else epoch_ms(batch.events)


def epoch_ms(events: Sequence[Event]) -> list[int]:
    """Epoch milliseconds of each event, converting each run of one datetime object once.

    Decoders share one datetime object per distinct time string, and a log's lines of one
    second come together: the last object is the cache. (A dict by ``id()`` cost more
    than it saved where every line has a time of its own, as JSON logs with fractions:
    0.46 against 0.31 us an event for traefik-json, 0.13 against 0.07 for nginx.)
    """
    out: list[int] = []
    append = out.append
    last: object = None
    ms = 0
    for ev in events:
        ts = ev.timestamp
        if ts is not last:
            last = ts
            ms = int(ts.timestamp() * 1000)
        append(ms)
    return out


_SOURCE = attrgetter("source")
_STATUS = attrgetter("status")
_SCHEME = attrgetter("scheme")
_BYTES_OUT = attrgetter("bytes_out")
_CLIENT_IP = attrgetter("client_ip")


def aggregate(
    batch: Batch,
    times: Sequence[int],
    sources: Iterable[str],
    statuses: Iterable[int | None],
    schemes: Iterable[str | None],
    bytes_out: Iterable[int | None],
    client_ips: Iterable[str | None],
) -> None:
    """Add the events, given as columns (epoch ms, source, status...), to the batch's
    minute stats and the requests of each client per hour."""
    minutes = batch.minutes
    hours: dict[int, dict[str, int]] = {}
    src: str | None = None
    minute = -1
    m = MinuteStats()
    clients: dict[str, int] = {}
    for ms, source, st, scheme, out, ip in zip(
        times, sources, statuses, schemes, bytes_out, client_ips, strict=True
    ):
        # Events come in runs of one source and minute: look the stats up per run.
        if ms // 60000 != minute or source != src:
            src = source
            minute = ms // 60000
            key = (src, minute)
            got = minutes.get(key)
            if got is None:
                got = minutes[key] = MinuteStats()
            m = got
            clients = hours.get(minute // 60) or hours.setdefault(minute // 60, {})
        m.requests += 1
        st = st or 0
        if st < 300:
            if st >= 200:
                m.status_2xx += 1
        elif st < 400:
            m.status_3xx += 1
        elif st < 500:
            m.status_4xx += 1
            if st == 401 or st == 403:
                m.auth_failures += 1
        else:
            m.status_5xx += 1
        if scheme == "http":
            m.plain_http += 1
        if out:
            m.bytes_out += out
        if ip is not None:
            clients[ip] = clients.get(ip, 0) + 1
    batch.client_hours.extend((h, c) for h, c in hours.items() if c)


@dataclass(frozen=True, slots=True)
class DecodeSetup:
    """What another process needs to build the same decoders (``auditor.decodeworker``)."""

    key: bytes  # the redaction key
    specs: Mapping[str, FormatSpec]  # each source's format
    sieve: SieveRules | None = None  # the rules, to sieve there for this detector


@dataclass(frozen=True, slots=True)
class SieveRules:
    """Where this process's rules came from, so a decode worker can load the same ones
    and sieve its events for them (moving that work off the detecting process).
    ``sha256`` and ``rule_ids`` are what the worker must find on loading them (the files
    may have changed since); ``token`` is new for each load in this process, so marks
    made for other rules (before a reload) are never used."""

    paths: tuple[str, ...]
    overrides: Mapping[str, RuleOverride]
    sha256: str
    rule_ids: tuple[str, ...]
    token: str


def _count_no_event(counter: SourceCounters, line: Line) -> None:
    """Count a line its decoder made no event of: unparsed, unless it is a directive (W3C
    "#Fields:", "#Date:"...: not garbage)."""
    if not is_directive(line.text):
        counter.lines_unparsed += 1
        counter.last_unparsed = f"{line.file}:{line.offset}: not in the expected format"


class LineStart:
    """The start of the line ``Pipeline.decode_whole_lines`` decodes (a ``Place``)."""

    __slots__ = ("file", "offset")

    def __init__(self, file: str) -> None:
        self.file = file
        self.offset = 0


class Pipeline:
    """Decode, detect and aggregate. One instance per run; the detector keeps its state."""

    def __init__(
        self,
        decoders: Mapping[str, Decoder],
        detector: Detector | None,
        setup: DecodeSetup | None = None,
    ) -> None:
        self.decoders = decoders
        self.detector = detector
        self.setup = setup  # None: decoding stays in this process

    def process(
        self, lines: Iterable[Line], positions: Sequence[Position] = (), *, snapshot: bool = True
    ) -> Batch:
        """``snapshot=False`` leaves ``detector_state`` None (the store keeps the last one)."""
        batch = self.decode(lines, positions)
        self.detect(batch, snapshot=snapshot)
        return batch

    def decode(self, lines: Iterable[Line], positions: Sequence[Position] = ()) -> Batch:
        """Events, counters and aggregates, without detection: the part that can run in
        another process (``auditor.decodeworker``), since it keeps no state across batches."""
        batch = Batch(positions=list(positions))
        events = batch.events
        decoders = self.decoders
        current_source = ""
        counter = SourceCounters()
        decode: Decoder | None = None
        for line in lines:
            if line.source != current_source:
                current_source = line.source
                counter = batch.counter(current_source)
                decode = decoders.get(current_source)
                decode = getattr(decode, "direct", decode)  # see SourceDecoder.direct
            if line.replay:
                if decode is not None:
                    decode(line)  # only for the state it sets (the file's columns)
                continue
            counter.lines_read += 1
            counter.bytes_read += line.end - line.offset
            if line.truncated:
                counter.lines_truncated += 1
            event = decode(line) if decode is not None else None
            if event is None:
                _count_no_event(counter, line)
                continue
            counter.lines_parsed += 1
            events.append(event)
        self._aggregate(batch)
        self._format_choices(batch)
        return batch

    def decode_whole_lines(
        self, source: str, file: str, offset: int, data: bytes, max_len: int
    ) -> Batch | None:
        """``decode`` of the lines in ``data``, whole lines of ``file`` from ``offset`` (it
        ends with a newline), as ``LineSplitter`` would cut them, read straight from the
        bytes where the source's decoder has a bytes form for the file (``RawDecode``: JSON
        formats) into the events' store rows (``auditor.rowchunk``): no text, no ``Line``
        and no ``Event`` made per line. The batch's ``table`` has the rows and columns, and
        its ``events`` are built from them on demand. A line the bytes form does not
        decode goes the usual way (a ``Line`` as the splitter makes it), so the events,
        counters and aggregates are the ones ``decode`` gives.
        None, having done nothing, when there is no bytes form (yet: the file's first line
        settles it) or a line is longer than ``max_len`` (the splitter cuts it)."""
        from auditor.rowchunk import decode_rows, table  # the store imports this module

        decoder = self.decoders.get(source)
        raw_for = getattr(decoder, "raw_for", None)
        raw: RawDecode | None = raw_for(file) if raw_for is not None else None
        if raw is None or decoder is None:
            return None
        # Each line with its newline (found with memchr: a quarter of what bytes.split
        # costs, which looks at each byte in a loop of its own; JSON takes the newline
        # for the whitespace it is)
        parts = BytesIO(data).readlines()
        if not parts or max(map(len, parts)) > max_len + 1:
            return None
        decode = getattr(decoder, "direct", decoder)  # see SourceDecoder.direct
        batch = Batch()
        counter = batch.counter(source)
        decode_line = self._decode_line

        def fallback(pos: int, end: int, part: bytes) -> Event | None:
            return decode_line(decode, counter, source, file, pos, end, part[:-1])

        got = decode_rows(raw, fallback, parts, offset, file, decoder.redactor)  # type: ignore[attr-defined]  # a SourceDecoder: it has raw_for
        n = len(got.rows)
        counter.lines_read += len(parts)
        counter.bytes_read += len(data)
        counter.lines_parsed += n
        packed = table(source, got)
        columns = packed.columns or {}
        times = got.times
        aggregate(
            batch,
            times,
            repeat(source, n),
            columns["status"],
            columns["scheme"],
            columns["bytes_out"],
            columns["client_ip"],
        )
        routes = columns["route"]
        batch.exposures = count_exposed(
            (ts, source, routes[i], got.exposures[i], times[i]) for i, ts in got.exposed
        )
        if times:
            counter.add_event_time(min(times))
            counter.add_event_time(max(times))
        batch.event_ms = times
        batch.packed = packed.blocks
        batch.table = packed
        batch.events = packed.events()  # type: ignore[assignment]  # a Sequence, built lazily
        self._format_choices(batch)  # as decode does (another source may be ``auto``)
        return batch

    @staticmethod
    def _decode_line(
        decode: Decoder,
        counter: SourceCounters,
        source: str,
        file: str,
        start: int,
        end: int,
        raw: bytes,
    ) -> Event | None:
        """One line of ``decode_whole_lines`` the usual way: its ``Line`` as the splitter
        makes it, decoded and, if it is no event, counted as ``decode`` counts it."""
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        line = Line(source, file, start, end, raw.decode("utf-8", "replace"))
        event = decode(line)
        if event is None:
            _count_no_event(counter, line)
        return event

    def _format_choices(self, batch: Batch) -> None:
        for decoder in self.decoders.values():
            take = getattr(decoder, "take_choices", None)  # auto-detecting decoders
            if take is not None:
                batch.format_choices.extend(
                    (c.source, f"{c.describe()} in {c.file}") for c in take()
                )

    def sieve_decoded(self, batch: Batch) -> None:
        """Sieve a batch decoded into its rows in this process (``Batch.table``) for the
        detector, as a decode worker does, from the decoded columns (sieving its events
        would build every one of them); then let the table go (the events keep what
        they need of it)."""
        table, batch.table = batch.table, None
        sieve = self.setup.sieve if self.setup is not None else None
        mark = getattr(self.detector, "sieve", None)
        if table is None or sieve is None or mark is None or not batch.events:
            return
        batch.marks = mark(batch.events, sieve.token, dict(table.columns or {}))

    def detect(self, batch: Batch, *, snapshot: bool = True) -> None:
        """Run the detector over the batch's events, in order; fills ``hits`` (and state)."""
        if self.detector is None:
            return
        marks = batch.marks
        sieve = self.setup.sieve if self.setup is not None else None
        if (
            marks is None
            or sieve is None
            or marks.token != sieve.token
            or marks.count != len(batch.events)
        ):  # sieved for other rules (before a reload), or not at all: sieve here
            marks = None
        batch.hits.extend(self.detector.observe_many(batch.events, marks))
        if snapshot:
            batch.detector_state = self.detector.snapshot()

    @staticmethod
    def _aggregate(batch: Batch) -> None:
        batch.event_ms = times = epoch_ms(batch.events)
        events = batch.events
        aggregate(
            batch,
            times,
            map(_SOURCE, events),
            map(_STATUS, events),
            map(_SCHEME, events),
            map(_BYTES_OUT, events),
            map(_CLIENT_IP, events),
        )
        batch.exposures = count_exposures(events, times)
        Pipeline._event_span(batch, times)

    @staticmethod
    def _event_span(batch: Batch, times: list[int]) -> None:
        """First and last event time per source (C-speed min/max for one-source batches)."""
        if not times:
            return
        sources = {ev.source for ev in batch.events}
        if len(sources) == 1:
            c = batch.counter(sources.pop())
            c.add_event_time(min(times))
            c.add_event_time(max(times))
            return
        for ev, ms in zip(batch.events, times, strict=True):
            batch.counter(ev.source).add_event_time(ms)


def chain_decoders(decoders: Mapping[str, Decoder]) -> Callable[[Line], Event | None]:
    """One decoder that dispatches on ``line.source`` (for callers that want a function)."""

    def decode(line: Line) -> Event | None:
        d = decoders.get(line.source)
        return d(line) if d is not None else None

    return decode
