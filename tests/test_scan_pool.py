"""A scan whose chunks are spread over several decode workers stores exactly what a
one-process scan stores: same events (with their offsets), findings, counters and positions,
whatever falls on a chunk boundary (over-long lines, lines longer than a chunk, bad bytes,
CRLF, an unterminated last line), and a resumed scan adds only the new lines. With one
worker and rules the scanning process decodes a share of the chunks itself
(``scanfiles._take_here``): those cases hold for its chunks too."""

from __future__ import annotations

import gzip
import itertools
import random
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

import auditor.scanfiles
from auditor.cli import _register, cli

_register()

ROOT = Path(__file__).resolve().parent.parent
DEMO_LOG = ROOT / "examples" / "logs" / "api-access.log"


def awkward_log(path: Path, seed: int) -> None:
    """Demo lines with, here and there, lines that defeat a naive cut."""
    rng = random.Random(seed)
    demo = DEMO_LOG.read_bytes().splitlines()
    out: list[bytes] = []
    for i in range(3000):
        line = demo[i % len(demo)]
        r = rng.random()
        if r < 0.01:
            line = line[:40] + b"x" * rng.randrange(5000, 12000) + line[40:]  # > a chunk
        elif r < 0.015:
            line = line + b"y" * 70000  # cut to max_line_bytes, counted as truncated
        elif r < 0.03:
            line = line.replace(b"GET", b"G\xffT\x00")  # not UTF-8, a NUL
        elif r < 0.05:
            line += b"\r"
        out.append(line)
    path.write_bytes(b"\n".join(out) + b"\n" + demo[7][:50])  # a partial last line


def run(*args: str) -> str:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def dump(db: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for what in ("events", "findings"):
        rows = [orjson.loads(x) for x in run(what, "--db", str(db), "--json").splitlines()]
        for row in rows:
            row.pop("id", None)
        out[what] = sorted(rows, key=lambda d: orjson.dumps(d, option=orjson.OPT_SORT_KEYS))
    with sqlite3.connect(db) as conn:  # what the report counts leaks from, and traffic
        for table in ("exposures", "minute_stats", "client_hours"):
            if table == "client_hours":  # in parts as they were written: sum them
                rows = conn.execute(
                    "SELECT hour, client_ip, sum(requests) FROM client_hours_all GROUP BY 1, 2"
                ).fetchall()
            else:
                rows = conn.execute(f"SELECT * FROM {table}").fetchall()
            out[table] = sorted(({"row": list(r)} for r in rows), key=repr)
    status = orjson.loads(run("status", "--db", str(db), "--json"))
    out["sources"] = [
        {k: s[k] for k in ("lines_read", "lines_parsed", "lines_unparsed", "lines_truncated")}
        for s in status["sources"]
    ]
    return out


def scan(monkeypatch: pytest.MonkeyPatch, db: Path, logs: Path, workers: int) -> None:
    monkeypatch.setenv("LOG_AUDITOR_CONFIG", "")
    # With one worker and rules, this process decodes every other chunk itself (it takes
    # a chunk only while the worker is busy, which a test cannot count on).
    turns = itertools.cycle((True, False))
    monkeypatch.setattr(auditor.scanfiles, "_take_here", lambda *_: next(turns))
    if workers:
        monkeypatch.setenv("LOG_AUDITOR_PARALLEL_MIN_BYTES", "0")
        monkeypatch.setenv("LOG_AUDITOR_DECODE_WORKERS", str(workers))
    else:
        monkeypatch.setenv("LOG_AUDITOR_PARALLEL_MIN_BYTES", str(1 << 60))
    run("scan", "--db", str(db), "--quiet", "--format", "nginx-combined", str(logs))


@pytest.mark.parametrize("chunk", [4096, 8191])
def test_spread_scan_equals_one_process_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(auditor.scanfiles, "CHUNK", chunk)
    monkeypatch.setattr(auditor.scanfiles, "HERE_CHUNK", chunk)
    logs = tmp_path / "logs"
    logs.mkdir()
    awkward_log(logs / "a.log", seed=chunk)
    text = (logs / "a.log").read_bytes()
    (logs / "b.log.1.gz").write_bytes(gzip.compress(text[: len(text) // 2].rstrip(b"y")))
    dumps = []
    for workers in (0, 1, 2, 3):
        db = tmp_path / f"w{workers}.db"
        if workers:
            (tmp_path / f"w{workers}.db.key").write_bytes((tmp_path / "w0.db.key").read_bytes())
        scan(monkeypatch, db, logs, workers)
        dumps.append(dump(db))
    assert dumps[0]["events"] and dumps[0]["findings"] and dumps[0]["exposures"]
    for d in dumps[1:]:
        assert d == dumps[0]


@pytest.mark.parametrize("workers", [1, 2])
def test_spread_scan_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    """(With one worker and rules, the scanning process decodes a share of the chunks.)"""
    monkeypatch.setattr(auditor.scanfiles, "CHUNK", 4096)
    monkeypatch.setattr(auditor.scanfiles, "HERE_CHUNK", 4096)
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "a.log"
    awkward_log(log, seed=1)
    db = tmp_path / "a.db"
    scan(monkeypatch, db, logs, workers)
    first = dump(db)
    scan(monkeypatch, db, logs, workers)
    assert dump(db) == first  # nothing twice
    with log.open("ab") as f:
        f.write(b"\n" + DEMO_LOG.read_bytes().splitlines()[3] + b"\n")
    scan(monkeypatch, db, logs, workers)
    after = dump(db)
    # The held-back fragment became a (cut, unparsed) line; the appended line an event.
    assert len(after["events"]) == len(first["events"]) + 1
    assert after["sources"][0]["lines_read"] == first["sources"][0]["lines_read"] + 2


def test_a_w3c_file_stays_with_one_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its ``#Fields:`` header names the columns of every later line: spread over workers,
    those that never saw it could not parse theirs."""
    monkeypatch.setattr(auditor.scanfiles, "CHUNK", 4096)
    monkeypatch.setattr(auditor.scanfiles, "HERE_CHUNK", 4096)
    logs = tmp_path / "logs"
    logs.mkdir()
    fields = (
        "#Fields: date time cs-method cs-uri-stem cs-uri-query c-ip c-port cs-version cs-host"
        " sc-status sc-bytes cs-bytes time-taken"
    )
    rows = [
        f"2026-11-20 09:{n // 60 % 60:02d}:{n % 60:02d} GET /w3c/{n} - 192.0.2.{n % 250 + 1}"
        f" 50123 HTTP/1.1 shop.example.com {404 if n % 7 else 200} 5120 310 42"
        for n in range(2000)
    ]
    (logs / "u_ex261120.log").write_text("\n".join(["#Software: IIS 10.0", fields, *rows]) + "\n")
    dumps = []
    for workers in (0, 2):
        db = tmp_path / f"w{workers}.db"
        if workers:
            (tmp_path / f"w{workers}.db.key").write_bytes((tmp_path / "w0.db.key").read_bytes())
        monkeypatch.setenv("LOG_AUDITOR_CONFIG", "")
        monkeypatch.setenv("LOG_AUDITOR_PARALLEL_MIN_BYTES", "0" if workers else str(1 << 60))
        monkeypatch.setenv("LOG_AUDITOR_DECODE_WORKERS", str(max(workers, 1)))
        run("scan", "--db", str(db), "--quiet", "--format", "w3c", str(logs))
        dumps.append(dump(db))
    assert len(dumps[0]["events"]) == 2000
    assert dumps[1] == dumps[0]
