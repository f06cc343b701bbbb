"""Events stored in compressed blocks: packing and unpacking. Pure.

A row per event costs SQLite a bind of 26 values and a b-tree insert, which was the largest
single cost of ingest. Events are instead kept in blocks of up to ``BLOCK_MAX`` events of one
source: an orjson array of rows, zstd-compressed (level 1: ~14x smaller, at about 0.4 µs an
event; zlib's level 1 was 2.8 times slower and gave ~12x. Blocks written by earlier
versions, zlib-compressed, still read). The report never reads events (it reads the aggregates), and the ``events`` command
reads only the blocks whose time span overlaps the asked period.

An event's id is ``block_id * ID_STRIDE + index``: stable, ordered like insertion.
"""

from __future__ import annotations

import dataclasses
import threading
import zlib
from array import array
from collections.abc import Iterator, Sequence
from itertools import accumulate, repeat
from operator import add, sub
from typing import Any, NamedTuple

import orjson
import zstandard

from auditor.model import Event, Exposure

BLOCK_MAX = 2048
ID_STRIDE = 1 << 16  # > BLOCK_MAX: ids of consecutive blocks never overlap

_FIELDS = tuple(f.name for f in dataclasses.fields(Event))
assert _FIELDS[0] == "timestamp" and _FIELDS[-1] == "exposures"

# The row order follows the Event's fields: a new field of Event changes the order of
# new rows, so it needs a migration that rewrites the stored blocks.
EVENT_COLUMNS: tuple[str, ...] = ("ts_ms", *_FIELDS[1:])
"""The fields of a stored event, in row order (``events --json`` prints them, plus ``id``)."""


class Block(NamedTuple):
    """One block; compressed, as a tuple, the parameters of ``INSERT INTO event_blocks``."""

    source: str
    first_ms: int
    last_ms: int
    n: int  # events in the block
    data: bytes  # the rows as JSON: zlib-compressed when stored, plain before


def _exposures(e: Event) -> list[dict[str, Any]] | None:
    if not e.exposures:
        return None
    return exposure_dicts(e.exposures)


def exposure_dicts(exposures: Sequence[Exposure]) -> list[dict[str, Any]]:
    """An event's exposures as its stored row holds them."""
    return [
        {
            "pii_type": x.pii_type,
            "location": x.location,
            "param": x.param,
            "masked": x.masked,
            "digest": x.digest,
            "detail": x.detail,
        }
        for x in exposures
    ]


def pack_block(source: str, rows: Sequence[Sequence[Any]]) -> Block:
    """One compressed block of stored rows (``ts_ms`` first) of one source."""
    return compress_block(_serialized(source, rows, orjson.dumps(rows)))


def _serialized(source: str, rows: Sequence[Sequence[Any]], raw: bytes) -> Block:
    stamps = [r[0] for r in rows]
    return Block(source, min(stamps), max(stamps), len(rows), raw)


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # how a zstd frame starts; a zlib stream starts 0x78
_local = threading.local()  # a zstd (de)compressor is not to be shared between threads


def _compressor() -> zstandard.ZstdCompressor:
    c: zstandard.ZstdCompressor | None = getattr(_local, "compressor", None)
    if c is None:
        c = _local.compressor = zstandard.ZstdCompressor(level=1)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if d is None:
        d = _local.decompressor = zstandard.ZstdDecompressor()
    return d


def compress_block(block: Block) -> Block:
    """A serialized block (rows as JSON, see ``serialize_events``) as it is stored. The
    store compresses in its own thread: zstd runs there without the GIL, and a decode
    worker need not do it."""
    return block._replace(data=_compressor().compress(block.data))


def _decompress(data: bytes) -> bytes:
    if data[:4] == _ZSTD_MAGIC:
        return _decompressor().decompress(data)
    return zlib.decompress(data)  # a block from before zstd


def serialize_events(
    events: Sequence[Event], times: Sequence[int], offsets: list[array[int]] | None = None
) -> list[Block]:
    """Blocks of at most ``BLOCK_MAX`` events, one source per block, in event order, their
    rows as uncompressed JSON (what ``unpack`` gives back; ``compress_block`` packs them).
    ``offsets``: if given, gets, per block, where each row starts in its data, and the
    data's length (row ``r`` is ``data[o[r] : o[r + 1] - 1]``): one row can then be read
    alone (see ``auditor.packedevents``)."""
    by_source: dict[str, list[tuple[object, ...]]] = {}
    # The stored row of each event, in EVENT_COLUMNS order (already redacted text), built
    # inline, each field named: a call per event cost a third of this function's time, and
    # an attrgetter of the 24 fields twice what these plain attribute reads cost.
    # tests/test_eventblocks.py checks the order against the Event's fields.
    for e, ms in zip(events, times, strict=True):
        rows = by_source.get(e.source)
        if rows is None:
            rows = by_source[e.source] = []
        rows.append(
            (
                ms,
                e.source,
                e.format,
                e.client_ip,
                e.client_port,
                e.method,
                e.scheme,
                e.host,
                e.server_port,
                e.path,
                e.route,
                e.query,
                e.http_version,
                e.status,
                e.bytes_in,
                e.bytes_out,
                e.duration_ms,
                e.user_name,
                e.user_agent,
                e.referrer,
                e.tls_version,
                e.request_id,
                e.forwarded_for,
                e.file,
                e.offset,
                _exposures(e) if e.exposures else None,
            )
        )
    return [
        serialize_rows(source, rows[i : i + BLOCK_MAX], offsets)
        for source, rows in by_source.items()
        for i in range(0, len(rows), BLOCK_MAX)
    ]


def serialize_rows(
    source: str, rows: Sequence[Sequence[Any]], offsets: list[array[int]] | None = None
) -> Block:
    """One uncompressed block of at most ``BLOCK_MAX`` stored rows of ``source``
    (``offsets``: as in ``serialize_events``)."""
    raw = orjson.dumps(rows) if offsets is None else _joined(rows, offsets)
    return _serialized(source, rows, raw)


def _joined(rows: Sequence[Sequence[Any]], offsets: list[array[int]]) -> bytes:
    """``orjson.dumps(rows)``, noting where each row starts.

    Rows are flat arrays (their exposures a list of objects), so outside of texts ``],[``
    occurs only between two rows. When it occurs exactly once per boundary, no text holds
    it, and each occurrence is a boundary: one ``dumps`` of the block, then a search.
    Otherwise (a logged text with ``],[`` in it) the rows are dumped one by one."""
    raw = orjson.dumps(rows)
    pieces = raw.split(b"],[")
    if len(pieces) == len(rows):
        # Row k + 1 starts 2 bytes after the k-th boundary, which is at the length of the
        # pieces before it plus 3 for each boundary before it (all counted in C).
        ends = accumulate(map(add, map(len, pieces[:-1]), repeat(3)))
        offsets.append(array("I", [1, *map(sub, ends, repeat(1)), len(raw)]))
        return raw
    parts = [orjson.dumps(r) for r in rows]
    offsets.append(array("I", accumulate((len(p) + 1 for p in parts), initial=1)))
    return b"[" + b",".join(parts) + b"]"


def unpack(data: bytes) -> list[list[Any]]:
    """The rows of a block; a damaged block raises ``ValueError`` or ``TypeError``."""
    try:
        rows = orjson.loads(_decompress(data))
    except (zlib.error, zstandard.ZstdError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"damaged event block: {exc}") from None
    if not isinstance(rows, list):
        raise TypeError("damaged event block: not a list of rows")
    return rows


def row_dict(block_id: int, index: int, row: Sequence[Any]) -> dict[str, Any]:
    """The ``events --json`` object of one stored row."""
    d: dict[str, Any] = {"id": block_id * ID_STRIDE + index}
    d.update(zip(EVENT_COLUMNS, row, strict=True))
    if d["exposures"] is None:
        d["exposures"] = []
    return d


def block_dicts(block_id: int, data: bytes) -> Iterator[dict[str, Any]]:
    for i, row in enumerate(unpack(data)):
        yield row_dict(block_id, i, row)
