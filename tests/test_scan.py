"""`log-auditor scan` run as a user would: a subprocess on real files and a real store."""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import orjson
import pytest

from auditor.store.eventblocks import unpack
from daemon_helpers import la

LINE = '203.0.113.{n} - - [20/Nov/2026:10:{m:02d}:00 +0000] "GET /api/v1/items/{n}?page=2 HTTP/1.1" 200 512 "-" "curl/8.4"'
SECRET_LINES = [
    '198.51.100.9 - - [20/Nov/2026:11:00:00 +0000] "GET /pay?card=4111%201111%201111%201111 HTTP/1.1" 200 1 "-" "ua"',
    '198.51.100.9 - - [20/Nov/2026:11:00:01 +0000] "GET /login?user=bob&password=S3cr3t-Passw0rd HTTP/1.1" 200 1 "-" "ua"',
    '198.51.100.9 - - [20/Nov/2026:11:00:02 +0000] "GET /u?email=planted.person%40example.org HTTP/1.1" 200 1 "https://x.example/?email=planted.person@example.org" "ua"',
]
RAW_SECRETS = [
    b"4111 1111 1111 1111",
    b"4111111111111111",
    b"S3cr3t-Passw0rd",
    b"planted.person@example.org",
]


def count(db: Path) -> int:
    with sqlite3.connect(db) as c:
        return int(c.execute("SELECT coalesce(sum(n), 0) FROM event_blocks").fetchone()[0])


def write_lines(p: Path, start: int, n: int, mode: str = "w") -> None:
    with p.open(mode) as f:
        for i in range(start, start + n):
            f.write(LINE.format(n=i, m=i % 60) + "\n")


def test_scan_is_idempotent_resumes_and_ignores_gz_copies(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    db = tmp_path / "a.db"
    write_lines(log, 0, 100)
    r = la("scan", "--db", str(db), str(log), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert count(db) == 100
    assert la("scan", "--db", str(db), str(log), cwd=tmp_path).returncode == 0
    assert count(db) == 100  # same file twice: stored once
    write_lines(log, 100, 10, mode="a")
    la("scan", "--db", str(db), str(log), cwd=tmp_path)
    assert count(db) == 110  # 10 appended lines: 10 more
    gz = tmp_path / "access.log.1.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    r = la("scan", "--db", str(db), str(gz), str(log), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert count(db) == 110  # a .gz rotated copy adds nothing
    st = orjson.loads(la("status", "--db", str(db), "--json", cwd=tmp_path).stdout)
    src = {s["name"]: s for s in st["sources"]}["access.log"]
    assert src["lines_read"] == 110 and src["lines_parsed"] == 110 and st["events"] == 110


def test_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    db = tmp_path / "a.db"
    write_lines(log, 0, 3)
    with log.open("a") as f:
        f.write(LINE.format(n=3, m=3)[:40])
    la("scan", "--db", str(db), str(log), cwd=tmp_path)
    assert count(db) == 3
    with log.open("a") as f:
        f.write(LINE.format(n=3, m=3)[40:] + "\n")
    la("scan", "--db", str(db), str(log), cwd=tmp_path)
    assert count(db) == 4


def test_no_planted_secret_reaches_db_wal_or_stdout(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("\n".join(SECRET_LINES) + "\n")
    db = tmp_path / "a.db"
    r = la("scan", "--db", str(db), str(log), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    outputs = [r.stdout + r.stderr]
    for args in (("events", "--json"), ("findings", "--json"), ("events",), ("findings",)):
        res = la(*args, "--db", str(db), cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        outputs.append(res.stdout + res.stderr)
    blobs = [p.read_bytes() for p in tmp_path.glob("a.db*")]
    assert any(p.name.endswith("-wal") for p in tmp_path.glob("a.db*")) or blobs
    with sqlite3.connect(db) as conn:  # the event blocks are compressed: look inside too
        blobs += [orjson.dumps(unpack(d)) for (d,) in conn.execute("SELECT data FROM event_blocks")]
    for secret in RAW_SECRETS:
        for blob in blobs:
            assert secret not in blob, secret
        for out in outputs:
            assert secret.decode() not in out, secret
    assert count(db) == 3
    ev = [
        orjson.loads(x)
        for x in la("events", "--db", str(db), "--json", cwd=tmp_path).stdout.splitlines()
    ]
    assert all(e["exposures"] for e in ev)


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x01\x02 binary garbage \xff\xfe\n",
        b"not a log line at all\n" * 3,
        b"x" * (3 * 1024 * 1024) + b"\n",
        b'{"mixed": "json line"}\n' + LINE.format(n=1, m=1).encode() + b"\n",
    ],
)
def test_bad_input_is_counted_never_a_crash(tmp_path: Path, content: bytes) -> None:
    log = tmp_path / "bad.log"
    log.write_bytes(content)
    db = tmp_path / "a.db"
    r = la("scan", "--db", str(db), str(log), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    st = orjson.loads(la("status", "--db", str(db), "--json", cwd=tmp_path).stdout)
    src = st["sources"][0]
    assert src["lines_read"] == src["lines_parsed"] + src["lines_unparsed"]


def test_corrupt_gz_keeps_what_was_read_and_reports(tmp_path: Path) -> None:
    raw = b"".join((LINE.format(n=i, m=i % 60) + "\n").encode() for i in range(20000))
    gz = gzip.compress(raw)
    bad = tmp_path / "old.log.gz"
    bad.write_bytes(gz[: len(gz) // 2])
    db = tmp_path / "a.db"
    r = la("scan", "--db", str(db), str(bad), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "skipped" in r.stderr and "old.log.gz" in r.stderr and "Traceback" not in r.stderr


def test_directory_of_many_files_empty_and_unreadable(tmp_path: Path) -> None:
    d = tmp_path / "logs"
    d.mkdir()
    for i in range(300):
        (d / f"f{i}.log").write_text(LINE.format(n=i, m=i % 60) + "\n")
    (d / "empty.log").write_text("")
    locked = d / "locked.log"
    locked.write_text(LINE.format(n=1, m=1) + "\n")
    locked.chmod(0)
    db = tmp_path / "a.db"
    r = la("scan", "--db", str(db), "--source", "bulk", str(d), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "empty.log" in r.stderr
    assert count(db) >= 300


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("scan", "--format", "nope", "x.log"), 2, "unknown format"),
        (("scan", "--db", "/proc/forbidden/a.db", "x.log"), 1, "cannot open the store"),
        (("findings", "--db", "missing.db"), 1, "no such store"),
        (("findings", "--db", "missing.db", "--since", "yesterday-ish"), 2, "--since"),
        (("scan", "--config", "nope.toml", "x.log"), 2, "nope.toml"),
    ],
)
def test_expected_errors_are_one_clear_line(
    tmp_path: Path, args: tuple[str, ...], code: int, needle: str
) -> None:
    r = la(*args, cwd=tmp_path)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_missing_file_is_reported(tmp_path: Path) -> None:
    r = la("scan", "--db", str(tmp_path / "a.db"), str(tmp_path / "nope.log"), cwd=tmp_path)
    assert r.returncode == 0
    assert "nope.log" in r.stderr and "no such file" in r.stderr


def test_a_w3c_file_scanned_again_keeps_its_columns(tmp_path: Path) -> None:
    """A re-scan starts mid-file; the #Fields header at the file's start still applies."""
    header = [
        "#Software: Microsoft Internet Information Services 10.0",
        (
            "#Fields: date time cs-method cs-uri-stem cs-uri-query c-ip c-port cs-version cs-host"
            " sc-status sc-bytes cs-bytes time-taken X-Forwarded-For"
        ),
    ]

    def line(n: int) -> str:
        return (
            f"2026-11-20 09:00:{n:02d} GET /w3c/{n} - 192.0.2.{n + 1} 50123 HTTP/1.1"
            " shop.example.com 404 5120 310 42 198.51.100.7"
        )

    log = tmp_path / "u_ex261120.log"
    db = tmp_path / "a.db"
    log.write_text("\n".join([*header, line(0), line(1)]) + "\n")
    assert la("scan", "--db", str(db), "--format", "w3c", str(log), cwd=tmp_path).returncode == 0
    with log.open("a") as f:
        f.write(line(2) + "\n")
    r = la("scan", "--db", str(db), "--format", "w3c", str(log), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = [
        orjson.loads(x)
        for x in la("events", "--db", str(db), "--json", cwd=tmp_path).stdout.splitlines()
    ]
    assert [(e["path"], e["client_ip"], e["status"]) for e in got] == [
        (f"/w3c/{n}", f"192.0.2.{n + 1}", 404) for n in range(3)
    ]
    status = orjson.loads(la("status", "--db", str(db), "--json", cwd=tmp_path).stdout)
    src = status["sources"][0]
    assert (src["lines_parsed"], src["lines_unparsed"]) == (3, 0)
