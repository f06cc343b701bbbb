"""The daemon's decode worker: lines travel flattened, results equal in-process decoding,
and a worker that dies mid-batch loses nothing (the rest is decoded in this process)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditor.config import load_config
from auditor.daemon import build_pipeline
from auditor.decodeworker import DecodeWorker
from auditor.lines import flatten_lines, unflatten_lines
from auditor.metrics import Metrics
from auditor.model import Line
from auditor.store import Store
from auditor.writer import BoundedQueue, Writer, _Pending
from daemon_helpers import write_config

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "logs"

_text = st.text(
    alphabet=st.characters(blacklist_characters="\n", blacklist_categories=["Cs"]), max_size=40
)
_line = st.builds(
    Line,
    source=st.sampled_from(["api", "web"]),
    file=st.sampled_from(["/a.log", "/b.log"]),
    offset=st.integers(0, 1 << 40),
    end=st.integers(0, 1 << 40),
    text=_text,
    truncated=st.booleans(),
    replay=st.booleans(),
)


@given(st.lists(_line, max_size=30))
def test_flattened_lines_come_back_equal(lines: list[Line]) -> None:
    assert unflatten_lines(flatten_lines(lines)) == lines


def _cli(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "auditor", *args],
        env={**os.environ, "LOG_AUDITOR_DECODE_WORKERS": "2"},  # a pool, whatever the CPUs
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("fmt", ["auto", "nginx-combined"])
def test_daemon_with_and_without_the_worker_stores_the_same(tmp_path: Path, fmt: str) -> None:
    """Every bundled rule on, the sample logs with their incidents: same events, same
    findings, whichever process decodes (a named format's parts are spread over the pool
    of workers, an ``auto`` source's stay with one)."""
    results = []
    for use in (True, False):
        d = tmp_path / ("worker" if use else "inline")
        d.mkdir()
        logs = d / "logs"
        shutil.copytree(SAMPLES, logs)
        sources: list[dict[str, object]] = [
            {"name": p.stem, "path": str(p), "format": fmt} for p in sorted(logs.iterdir())
        ]
        cfg = write_config(
            d, sources, rules=True, daemon={"decode_worker": use, "batch_lines": 700}
        )
        if not use:  # the same redaction key, so the same keyed digests
            shutil.copy2(tmp_path / "worker" / "audit.db.key", d / "audit.db.key")
        _cli("run", "--once", "--config", str(cfg))
        db = str(d / "audit.db")
        # Ids follow the store's blocks, which follow the worker's parts: compare the rest.
        events = _cli("events", "--db", db, "--json").replace(str(d), "<dir>")
        events = "\n".join(re.sub(r'^\{"id":\d+,', "{", e) for e in events.splitlines())
        findings = _cli("findings", "--db", db, "--json")
        assert events.count("\n") == 2359
        results.append((events, findings))
    assert results[0] == results[1]
    assert results[0][1].count("\n") > 5  # the incidents were found


def test_a_worker_dying_mid_batch_loses_nothing(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, [{"name": "api", "path": str(SAMPLES / "x")}]))
    store = Store.open(tmp_path / "audit.db")
    writer = Writer(
        tmp_path / "audit.db",
        BoundedQueue(1000, 1 << 20),
        Metrics(),
        batch_lines=5000,
        batch_seconds=0.1,
        decode_worker=True,
        decode_workers=2,
    )
    writer.pipeline = build_pipeline(cfg, store, None)
    text = (SAMPLES / "api-access.log").read_text().splitlines()
    lines = [Line("api", "/x.log", i * 1000, i * 1000 + 999, t) for i, t in enumerate(text)]
    pending = _Pending(lines=lines)
    try:
        first = writer._process(pending, writer._submit(pending))
        pool = writer._worker
        assert pool is not None
        # One of the pool dies with parts in flight. Stopped before they are sent, it
        # cannot answer any of them before the kill (a part of 311 lines takes it a few
        # milliseconds: killed after the send, it sometimes had answered already).
        dead = pool.workers[1]
        os.kill(dead._proc.pid, signal.SIGSTOP)
        submitted = writer._submit(pending)
        assert submitted is not None and submitted.worker is pool
        dead._proc.kill()
        dead._proc.wait()
        second = writer._process(pending, submitted)
        assert writer._worker is None  # dropped, retried later
        third = writer._process(pending, writer._submit(pending))  # in this process
    finally:
        asyncio.run(_close(writer))
        store.close()
    for batch in (first, second, third):
        assert batch.n_events == len(lines)
        stored = len(lines) if batch.packed is None else sum(b.n for b in batch.packed)
        assert stored == len(lines)  # what the store writes (it packs what is not packed)
    paths = []
    for x in (first, second):
        assert x.packed is not None
        paths.append([row[9] for b in x.packed for row in orjson.loads(b.data)])
    assert paths[0] == paths[1] == [e.path for e in third.events]


async def _close(writer: Writer) -> None:
    await writer.close()


def _demo_lines() -> list[Line]:
    text = (SAMPLES / "api-access.log").read_text().splitlines()
    return [Line("api", "/x.log", i * 1000, i * 1000 + 999, t) for i, t in enumerate(text)]


def test_the_worker_sieves_for_the_rules_it_was_given() -> None:
    """With ``use_sieve`` a worker loads the same rules and sends its decoded events'
    marks, tagged with the rules' token; rules that load otherwise there (a file changed
    since) or none: no marks, and the detecting process sieves itself."""
    from auditor.detect import Detector
    from auditor.formats import FormatSpec
    from auditor.pipeline import SieveRules
    from auditor.rules import bundled_rules_dir, load_rulesets

    ruleset = load_rulesets([bundled_rules_dir()], {})
    ids = tuple(r.id for r in ruleset.rules)
    rules = SieveRules((str(bundled_rules_dir()),), {}, ruleset.sha256, ids, "t1")
    other = SieveRules((str(bundled_rules_dir()),), {}, "0" * 64, ids, "t2")
    specs = {"api": FormatSpec("nginx-combined")}
    lines = _demo_lines()
    worker = DecodeWorker(b"k" * 32, 65536)
    try:
        got = []
        for sieve in (rules, other, None):
            worker.use_sieve(sieve)
            worker.send_lines(specs, lines)
            got.append(worker.receive().batch)
    finally:
        worker.close()
    marks = got[0].marks
    assert marks is not None and marks.token == "t1"
    want = Detector(ruleset).sieve(got[0].events, "t1")
    assert marks == want and 0 < len(marks.suspects) < len(lines)
    assert got[1].marks is None and got[2].marks is None


def test_marks_of_other_rules_are_not_used(tmp_path: Path) -> None:
    """Marks count only for the rules they were made for (a reload makes new ones): here
    marks that call every event harmless hide the demo's incidents with the right token,
    and are ignored with another."""
    from array import array

    from auditor.pipeline import Marks

    sources: list[dict[str, object]] = [{"name": "api", "path": str(SAMPLES / "x")}]
    cfg = load_config(write_config(tmp_path, sources, rules=True))
    store = Store.open(tmp_path / "audit.db")
    try:
        pipeline = build_pipeline(cfg, store, None)
    finally:
        store.close()
    assert pipeline.setup is not None and pipeline.setup.sieve is not None
    token = pipeline.setup.sieve.token
    hits = []
    for tok in ("another", token):
        batch = pipeline.decode(_demo_lines())
        batch.marks = Marks(array("I"), array("I"), len(batch.events), tok)
        pipeline.detect(batch)
        hits.append({h.rule_id for h in batch.hits})
    assert len(hits[0]) > 5
    assert hits[1] < hits[0]  # the detectors that see every event still ran
