"""A scan decoded in a second process gives exactly what a one-process scan gives."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
DEMO_LOG = ROOT / "examples" / "logs" / "api-access.log"


def scan(db: Path, *paths: Path, parallel: bool) -> None:
    env = {**os.environ, "LOG_AUDITOR_CONFIG": ""}
    # 0: every scan uses the worker; a huge threshold: none does.
    env["LOG_AUDITOR_PARALLEL_MIN_BYTES"] = "0" if parallel else str(1 << 60)
    r = subprocess.run(
        [sys.executable, "-m", "auditor", "scan", "--db", str(db), "--quiet"]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr


def dump(db: Path, what: str) -> list[dict[str, object]]:
    r = subprocess.run(
        [sys.executable, "-m", "auditor", what, "--db", str(db), "--json"],
        capture_output=True,
        timeout=120,
        env={**os.environ, "LOG_AUDITOR_CONFIG": ""},
        check=True,
    )
    if what == "status":
        return [orjson.loads(r.stdout)]
    rows = [orjson.loads(x) for x in r.stdout.splitlines()]
    for row in rows:
        row.pop("id", None)
    return sorted(rows, key=lambda d: orjson.dumps(d, option=orjson.OPT_SORT_KEYS))


def inputs(tmp_path: Path) -> list[Path]:
    """The demo log (incidents, PII), a gzip rotated copy of part of it, and a file whose
    last line has no newline yet."""
    logs = tmp_path / "logs"
    logs.mkdir()
    text = DEMO_LOG.read_bytes()
    cut = text.index(b"\n", len(text) // 3) + 1
    (logs / "api-access.log.1.gz").write_bytes(gzip.compress(text[:cut]))
    (logs / "api-access.log").write_bytes(text[cut:])
    # Lines from the middle (a file is known by its first line, so not the demo's first).
    tail = text[text.index(b"\n", len(text) // 2) + 1 :]
    (logs / "growing.log").write_bytes(tail[: tail.index(b"\n", 2000) + 40])
    return [logs]


def test_parallel_scan_equals_one_process_scan(tmp_path: Path) -> None:
    paths = inputs(tmp_path)
    one, two = tmp_path / "one.db", tmp_path / "two.db"
    scan(one, *paths, parallel=False)
    shutil.copy(tmp_path / "one.db.key", tmp_path / "two.db.key")  # same digests
    scan(two, *paths, parallel=True)
    for what in ("findings", "events"):
        a, b = dump(one, what), dump(two, what)
        assert a and a == b, what
    sa, sb = dump(one, "status")[0], dump(two, "status")[0]
    assert sa["events"] == sb["events"] and sa["findings"] == sb["findings"]
    for x, y in zip(sa["sources"], sb["sources"], strict=True):  # type: ignore[call-overload]
        for k in ("lines_read", "lines_parsed", "lines_unparsed", "bytes_read", "lag_bytes"):
            assert x[k] == y[k], k


def lines_read(status: dict[str, object]) -> int:
    sources = status["sources"]
    assert isinstance(sources, list)
    return sum(int(s["lines_read"]) for s in sources)


def test_parallel_scan_resumes_where_it_stopped(tmp_path: Path) -> None:
    paths = inputs(tmp_path)
    db = tmp_path / "a.db"
    scan(db, *paths, parallel=True)
    status = dump(db, "status")[0]
    before = status["events"]
    assert isinstance(before, int)
    scan(db, *paths, parallel=True)
    assert dump(db, "status")[0]["events"] == before  # nothing twice
    grow = tmp_path / "logs" / "growing.log"
    with grow.open("ab") as f:
        f.write(b"\n")  # completes the pending line
        f.write(DEMO_LOG.read_bytes().splitlines(keepends=True)[5])
    scan(db, *paths, parallel=True)
    after = dump(db, "status")[0]
    # The held-back fragment became a (cut, unparsed) line; the appended line an event.
    assert after["events"] == before + 1
    assert lines_read(after) == lines_read(status) + 2
