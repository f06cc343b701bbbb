"""A chunk of whole lines decoded straight into store rows, with no ``Event`` per line. Pure.

A decode worker used to make an ``Event`` of each line, then read its 26 fields back to
serialize its store row, read columns of the batch's events for the sieve and the
detectors, and the timestamps for the minute stats. A JSON decoder can give the fields
themselves (``RawDecode``): here they become the row as it is, and the columns one
transposition of the rows (in C). The batch's events are built from these rows on demand
(``auditor.packedevents``): a detector looks at few events one by one.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from auditor.formats.event import _FIELDS
from auditor.formats.spec import RawDecode
from auditor.model import Event, Exposure
from auditor.normalize import RedactorLike, route_templates
from auditor.packedevents import Packed
from auditor.pipeline import LineStart
from auditor.store.eventblocks import BLOCK_MAX, exposure_dicts, serialize_rows

Fallback = Callable[[int, int, bytes], Event | None]
"""The usual way for a line the row decoder did not take: (its offset, the offset after
its newline, its bytes with the newline) → its event, or None (counted as the usual way
counts it)."""

_COLUMNS = _FIELDS[1:-1]  # the columns taken from the rows: all but the time and exposures


class Rows:
    """What ``decode_rows`` gives: the store rows (``ts_ms`` first, exposures as stored),
    each row's epoch ms, the timestamps as ``Packed`` has them, and the exposures (each
    event's, as on the ``Event``) with the timestamp of each event that has any."""

    __slots__ = ("exposed", "exposures", "rows", "stamp_of", "stamps", "times")

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []
        self.times: list[int] = []
        self.stamps: array[int] = array("q")
        self.stamp_of: array[int] = array("I")
        self.exposures: list[tuple[Exposure, ...]] = []
        self.exposed: list[tuple[int, datetime]] = []  # (row index, timestamp)


def decode_rows(
    decode: RawDecode,
    fallback: Fallback,
    parts: Sequence[bytes],
    offset: int,
    file: str,
    redactor: RedactorLike,
) -> Rows:
    """Each line of ``parts`` (whole lines, each with its newline, from ``offset`` in
    ``file``) as a store row: by ``decode``, or else by ``fallback``. The row's
    epoch ms and stamp are worked out as ``epoch_ms`` and ``PackedEvents`` do for an event
    (once per run of one timestamp object). ``decode`` leaves the target (path, query) as
    logged: ``redactor`` (the decoder's) redacts the chunk's targets together."""
    out = Rows()
    place = LineStart(file)
    rows, times, exposures = out.rows, out.times, out.exposures
    append, tappend, xappend = rows.append, times.append, exposures.append
    put, note = out.stamps.append, out.stamp_of.append
    new_routes: list[list[Any]] = []
    fallbacks: set[int] = set()
    last: object = None
    ms = 0
    k = -1
    pos = offset
    for part in parts:
        place.offset = pos
        end = pos + len(part)
        try:
            row = decode(part, place)
        except Exception:  # noqa: BLE001 - the usual way says what is wrong
            row = None
        if row is None:
            event = fallback(pos, end, part)
            if event is None:
                pos = end
                continue
            row = [getattr(event, name) for name in _FIELDS]  # redacted already
            fallbacks.add(len(rows))
        ts = row[0]
        if ts is not last:
            last = ts
            ms = int(ts.timestamp() * 1000)
            base = ms * 1000
            d = (ts.microsecond - base) % 1_000_000
            put(base + d if d < 500_000 else base + d - 1_000_000)
            k += 1
        note(k)
        tappend(ms)
        row[0] = ms
        if row[10] is None:  # a path new to the route memo
            new_routes.append(row)
        x = row[25]
        xappend(x)
        if x:
            out.exposed.append((len(rows), ts))
            row[25] = exposure_dicts(x)
        else:
            row[25] = None
        append(row)
        pos = end
    _redact_targets(out, fallbacks, redactor, new_routes)
    if new_routes:
        routes = route_templates([row[9] for row in new_routes])
        for row, route in zip(new_routes, routes, strict=True):
            row[10] = route
    return out


def _redact_targets(
    out: Rows, fallbacks: set[int], redactor: RedactorLike, new_routes: list[list[Any]]
) -> None:
    """Redact the targets of the rows ``decode`` made (those of ``fallbacks`` came from
    events, redacted): each that ``Redactor.dirty_targets`` points at (all of them for a
    redactor without it) as ``redact_target`` does it; its exposures go before those the
    decoder found (the referrer's), as ``assemble`` orders them, and a path changed needs
    its route again (``new_routes``)."""
    rows = out.rows
    mine = [i for i in range(len(rows)) if i not in fallbacks] if fallbacks else range(len(rows))
    dirty_of = getattr(redactor, "dirty_targets", None)
    if dirty_of is None:
        dirty: Sequence[int] = range(len(mine))
    else:
        dirty = dirty_of([rows[i][9] for i in mine], [rows[i][11] for i in mine])
    exposed = {i for i, _ in out.exposed}
    for j in dirty:
        i = mine[j]
        row = rows[i]
        path, query, found = redactor.redact_target(row[9], row[11])
        if path != row[9]:
            if row[10] is not None:
                new_routes.append(row)
            row[9] = path
            row[10] = None
        row[11] = query
        if found:
            both = found + out.exposures[i]
            out.exposures[i] = both
            row[25] = exposure_dicts(both)
            if i not in exposed:
                us = out.stamps[out.stamp_of[i]]
                out.exposed.append((i, _EPOCH + timedelta(microseconds=us)))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def table(source: str, got: Rows) -> Packed:
    """The rows as ``Packed`` events of ``source``: serialized in blocks (each row's start
    noted), with every column but the timestamp (``exposures`` as on the ``Event``)."""
    rows = got.rows
    offsets: list[array[int]] = []
    blocks = [
        serialize_rows(source, rows[i : i + BLOCK_MAX], offsets)
        for i in range(0, len(rows), BLOCK_MAX)
    ]
    if rows:
        transposed = list(zip(*rows, strict=True))
        columns = {name: list(transposed[i + 1]) for i, name in enumerate(_COLUMNS)}
    else:
        columns = {name: [] for name in _COLUMNS}
    columns["exposures"] = got.exposures
    return Packed(blocks, got.stamps, got.stamp_of, columns, offsets, None)
