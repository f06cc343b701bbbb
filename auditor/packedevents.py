"""Events decoded in another process, kept as their store rows and built when asked. Pure.

A decode worker sends its events serialized for the store (``Block`` rows as JSON, one
source per block), each event's exact timestamp, and, for the detecting process, the
columns its detectors read over every event. Building every event back from its row cost
that process about 4 µs an event, most of it parsing JSON, while its detectors read whole
columns and look at few events one by one (the sieve's suspects, the ones that fire). So
an event is built on first use, from its own row (``serialize_events`` notes where each
row starts), or all at once when every one is wanted.

Blocks hold one source each, so with several sources in a batch the rows are not in event
order: each event's place among the rows is worked out from its source, as the blocks
were cut (sources in order of first appearance, each source's rows in order).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from operator import attrgetter
from typing import Any, NamedTuple, cast, overload

import orjson

from auditor.formats.event import _Draft
from auditor.model import Event, Exposure
from auditor.store.eventblocks import Block, serialize_events

_build = cast(Callable[..., Event], _Draft)


class Packed(NamedTuple):
    """A batch's events as they travel between processes (see ``pack``)."""

    blocks: list[Block]  # the store's rows, uncompressed
    stamps: array[int]  # the timestamps, in epoch microseconds (each run of one object once)
    stamp_of: array[int]  # each event's timestamp, as an index into ``stamps``
    columns: dict[str, list[Any]] | None  # None: every event is to be built
    offsets: list[array[int]] | None  # per block, where each row starts
    where: array[int] | None  # each event's place among the rows; None: its index

    def events(self) -> PackedEvents:
        return PackedEvents(
            self.blocks, self.stamps, self.stamp_of, self.columns or {}, self.offsets, self.where
        )


def pack(
    events: Sequence[Event],
    times: Sequence[int],
    columns: Sequence[str] | None,
    read: Mapping[str, list[Any]] | None = None,
) -> Packed:
    """``events`` (``times``: their epoch ms) serialized for the store, with the named
    ``columns`` for a process that builds only the events it looks at (``read``: columns
    already read, e.g. by the sieve); with ``columns`` None, for one that builds them all."""
    got: dict[str, list[Any]] | None = None
    offsets: list[array[int]] | None = None
    if columns is not None:
        got = take(read or {}, columns, events)
        offsets = []
    blocks = serialize_events(events, times, offsets)
    stamps, index = _stamps(events, times)
    sources = got["source"] if got is not None and "source" in got else [e.source for e in events]
    return Packed(blocks, stamps, index, got, offsets, rows_in_event_order(sources))


def take(
    have: Mapping[str, list[Any]], columns: Sequence[str], events: Sequence[Event]
) -> dict[str, list[Any]]:
    """The named columns of ``events``: from ``have`` (already read), or read now."""
    return {
        name: have[name] if name in have else list(map(attrgetter(name), events))
        for name in columns
    }


def _stamps(events: Sequence[Event], times: Sequence[int]) -> tuple[array[int], array[int]]:
    """The events' exact timestamps in epoch microseconds, one per run of events that share
    a timestamp object, and each event's index into them.

    Plain integers, not the datetimes: pickling a datetime cost the worker 0.8 µs (JSON
    formats log a new time nearly every line), and a process that never builds the events
    (a scan without rules) never makes one back. Timestamps are aware UTC datetimes (see
    ``auditor.formats.times``). A timestamp's microseconds come from ``times`` (its epoch
    ms, off by at most one from float rounding) and its ``microsecond``: the one value
    within half a second of ``ms * 1000`` that has those last six digits; a subtraction of
    datetimes cost three times as much."""
    stamps: array[int] = array("q")
    index: array[int] = array("I")
    put, note = stamps.append, index.append
    last: object = None
    k = -1
    for e, ms in zip(events, times, strict=True):
        ts = e.timestamp
        if ts is not last:
            last = ts
            base = ms * 1000
            d = (ts.microsecond - base) % 1_000_000
            put(base + d if d < 500_000 else base + d - 1_000_000)
            k += 1
        note(k)
    return stamps, index


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def rows_in_event_order(sources: Sequence[str]) -> array[int] | None:
    """Each event's position among its batch's rows (blocks in order), or None when that
    is its own index (a single source, or each source's events in one run)."""
    firsts = dict.fromkeys(sources)  # in order of first appearance, as the blocks are cut
    if len(firsts) <= 1:  # the usual batch: one source (in C)
        return None
    runs = 1 + sum(1 for a, b in pairwise(sources) if a != b)
    if runs == len(firsts):
        return None
    counts = Counter(sources)
    base: dict[str, int] = {}
    total = 0
    for s in firsts:
        base[s] = total
        total += counts[s]
    out = array("I")
    for s in sources:
        p = base[s]
        base[s] = p + 1
        out.append(p)
    return out


class PackedEvents(Sequence[Event]):
    """The events of one decoded batch, in event order, built from their rows on demand.

    ``columns``: whole-batch columns (field name → value of each event), as sent; a
    detector reads them instead of the events. ``offsets``: per block, where each row
    starts (see ``serialize_events``); None: events are built a block at a time."""

    __slots__ = (
        "_blocks",
        "_built",
        "_index",
        "_offsets",
        "_stamps",
        "_starts",
        "_times",
        "_where",
        "columns",
    )

    def __init__(
        self,
        blocks: Sequence[Block],
        stamps: Sequence[int],
        index: Sequence[int],
        columns: dict[str, list[Any]],
        offsets: Sequence[array[int]] | None,
        where: array[int] | None,
    ) -> None:
        self._blocks = blocks
        self._stamps, self._index = stamps, index
        self._times: dict[int, datetime] = {}  # built from ``stamps``, each once
        self.columns = columns
        self._offsets = offsets
        self._where = where
        self._built: dict[int, Event] = {}
        starts = [0]
        for b in blocks:
            starts.append(starts[-1] + b.n)
        self._starts = starts
        if starts[-1] != len(index):
            raise ValueError(f"{starts[-1]} rows for {len(index)} events")

    def __len__(self) -> int:
        return len(self._index)

    @overload
    def __getitem__(self, i: int) -> Event: ...
    @overload
    def __getitem__(self, i: slice) -> list[Event]: ...
    def __getitem__(self, i: int | slice) -> Event | list[Event]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        ev = self._built.get(i)
        if ev is None:
            if i < 0:
                i += len(self)
            if not 0 <= i < len(self):
                raise IndexError(i)
            ev = self._built.get(i)
            if ev is None:
                ev = self._built[i] = self._one(i)
        return ev

    def __iter__(self) -> Iterator[Event]:
        return iter(self.all())

    def seconds(self) -> list[float]:
        """Each event's log time in epoch seconds, without building the events."""
        secs = [us / 1_000_000 for us in self._stamps]  # what datetime.timestamp() gives
        return [secs[k] for k in self._index]

    def _time(self, k: int) -> datetime:
        """The datetime of ``stamps[k]`` (one object per stamp, shared by its events)."""
        ts = self._times.get(k)
        if ts is None:
            ts = self._times[k] = _EPOCH + _MICRO * self._stamps[k]
        return ts

    def _one(self, i: int) -> Event:
        p = i if self._where is None else self._where[i]
        k = bisect_right(self._starts, p) - 1
        r = p - self._starts[k]
        data = self._blocks[k].data
        if self._offsets is None:
            row = orjson.loads(data)[r]
        else:
            o = self._offsets[k]
            row = orjson.loads(data[o[r] : o[r + 1] - 1])
        return self._event(row, i)

    def _event(self, row: list[Any], i: int) -> Event:
        row[0] = self._time(self._index[i])
        expo = row[25]
        row[25] = tuple(Exposure(**x) for x in expo) if expo else ()
        return _build(*row)

    def all(self) -> list[Event]:
        """Every event, in order (each block parsed once)."""
        n = len(self)
        if len(self._built) == n:
            return [self._built[i] for i in range(n)]
        rows: list[list[Any]] = []
        for b in self._blocks:
            rows.extend(orjson.loads(b.data))
        where = self._where
        built = self._built
        out: list[Event] = []
        for i in range(n):
            ev = built.get(i)
            if ev is None:
                ev = built[i] = self._event(rows[i if where is None else where[i]], i)
            out.append(ev)
        return out
