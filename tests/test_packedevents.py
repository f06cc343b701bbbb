"""Events that travel as store rows (auditor.packedevents): built on demand, equal to the
originals, in event order whatever the mix of sources; and through a real decode worker."""

from __future__ import annotations

import random
from array import array
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.decodeworker import DecodeWorker
from auditor.formats import FormatSpec, build_decoder
from auditor.model import Event, Line
from auditor.packedevents import pack, rows_in_event_order
from auditor.pipeline import Pipeline, SieveRules, epoch_ms
from auditor.redact import Redactor
from auditor.rules import bundled_rules_dir, load_rulesets
from auditor.store.eventblocks import BLOCK_MAX, compress_block, serialize_events, unpack

DEMO_LOG = Path(__file__).resolve().parents[1] / "examples" / "logs" / "api-access.log"
KEY = b"k" * 32
TEXT = DEMO_LOG.read_text().splitlines()


def _events() -> list[Event]:
    decode = build_decoder(FormatSpec("nginx-combined"), Redactor(KEY), "api")
    out = []
    for i, t in enumerate(TEXT):
        ev = decode(Line("api", "/a.log", i * 1000, i * 1000 + 999, t))
        assert ev is not None
        out.append(ev)
    return out


EVENTS = _events()
COLUMNS = ("source", "client_ip", "route", "status", "path", "user_name")


def _mixed(sources: list[int]) -> list[Event]:
    """Demo events, repeated as needed, the i-th one of source ``s<sources[i]>``."""
    return [
        replace(EVENTS[i % len(EVENTS)], source=f"s{s}", offset=i) for i, s in enumerate(sources)
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=300), st.randoms(use_true_random=False))
def test_every_event_comes_back_as_it_was(sources: list[int], rnd: random.Random) -> None:
    events = _mixed(sources)
    packed = pack(events, epoch_ms(events), COLUMNS).events()
    assert len(packed) == len(events)
    order = list(range(len(events)))
    rnd.shuffle(order)  # built one at a time, in any order
    for i in order:
        assert packed[i] == events[i]
    assert packed[-1] == events[-1]
    assert packed[1:4] == events[1:4]
    assert list(packed) == events
    for name in COLUMNS:
        assert packed.columns[name] == [getattr(e, name) for e in events]
    assert packed.seconds() == [e.timestamp.timestamp() for e in events]
    with pytest.raises(IndexError):
        packed[len(events)]


def test_columns_the_worker_sieve_read_are_sent_as_read() -> None:
    """A sieving worker hands ``pack`` the columns its sieve read: they are sent as they
    are (not read again), and the others are read from the events."""
    rules = load_rulesets(sorted(bundled_rules_dir().glob("*.toml")), {})
    from auditor.detect import Detector

    detector = Detector(rules)
    read: dict[str, list[object]] = {}
    detector.sieve(EVENTS, "t", read)
    assert "path" in read and "status" in read
    packed = pack(EVENTS, epoch_ms(EVENTS), detector.columns, read)
    assert packed.columns is not None
    for name in detector.columns:
        assert packed.columns[name] == [getattr(e, name) for e in EVENTS]
        if name in read:
            assert packed.columns[name] is read[name]


@pytest.mark.parametrize("pattern", ["one", "runs", "interleaved"])
def test_rows_are_found_across_full_blocks(pattern: str) -> None:
    """More than ``BLOCK_MAX`` events of a source: several blocks per source."""
    n = 2 * BLOCK_MAX + 700
    sources = {
        "one": [0] * n,
        "runs": [0] * (BLOCK_MAX + 5) + [1] * (n - BLOCK_MAX - 5),
        "interleaved": [i % 3 % 2 for i in range(n)],
    }[pattern]
    events = _mixed(sources)
    got = pack(events, epoch_ms(events), None)
    assert (got.where is None) == (pattern != "interleaved")
    assert got.columns is None and got.offsets is None
    assert got.events().all() == events  # a block at a time
    lazy = pack(events, epoch_ms(events), COLUMNS).events()
    for i in (0, BLOCK_MAX - 1, BLOCK_MAX, BLOCK_MAX + 5, n - 1):
        assert lazy[i] == events[i]


def test_the_rows_are_the_stores_rows() -> None:
    """Noting where rows start changes nothing in what the store gets."""
    events = _mixed([0, 1, 0, 2, 1] * 100)
    offsets: list[array[int]] = []
    with_offsets = serialize_events(events, epoch_ms(events), offsets)
    assert with_offsets == serialize_events(events, epoch_ms(events))
    assert len(offsets) == len(with_offsets)
    for block, starts in zip(with_offsets, offsets, strict=True):
        rows = unpack(compress_block(block).data)
        assert [orjson.loads(block.data[a : b - 1]) for a, b in pairwise(starts)] == rows


@given(st.lists(st.sampled_from("abc"), max_size=60))
def test_each_event_finds_its_row(sources: list[str]) -> None:
    """The row order is the blocks' (sources in order of first appearance)."""
    where = rows_in_event_order(sources)
    rows = sorted(range(len(sources)), key=lambda i: (sources.index(sources[i]), i))
    want = [rows.index(i) for i in range(len(sources))]
    assert (list(where) if where is not None else list(range(len(sources)))) == want


def test_a_worker_keeps_event_order_when_sources_interleave() -> None:
    """The daemon sends parts that mix sources; the worker's blocks hold one source each.
    The events (their timestamps above all) come back in the order sent, with and without
    the sieve's columns (before, a mixed part came back grouped by source, each event with
    another's timestamp)."""
    lines = [
        Line("a" if (i // 50) % 2 == 0 else "b", f"/{i // 50 % 2}.log", i * 1000, i * 1000 + 9, t)
        for i, t in enumerate(TEXT[:700])
    ]
    specs = {"a": FormatSpec("nginx-combined"), "b": FormatSpec("nginx-combined")}
    decoders = {s: build_decoder(spec, Redactor(KEY), s) for s, spec in specs.items()}
    want = Pipeline(decoders, None).decode(lines)
    ruleset = load_rulesets([bundled_rules_dir()], {})
    rules = SieveRules(
        (str(bundled_rules_dir()),), {}, ruleset.sha256, tuple(r.id for r in ruleset.rules), "t"
    )
    worker = DecodeWorker(KEY, 65536)
    try:
        got = []
        for sieve in (None, rules):
            worker.use_sieve(sieve)
            worker.send_lines(specs, lines)
            got.append(worker.receive().batch)
    finally:
        worker.close()
    assert got[0].marks is None and got[1].marks is not None
    for batch in got:
        assert len(batch.events) == len(want.events)
        assert [batch.events[i] for i in range(len(want.events))] == want.events
