"""What `scan` does before its first line, made cheaper: the same results, checked here;
the figures are in the commit messages."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlite_utils import Database
from sqlite_utils.db import _iter_complete_sql_statements

from auditor.config import load_config
from auditor.engine import build_engine, load_config_rules
from auditor.errors import RulesetError, StoreError
from auditor.formats import FormatSpec
from auditor.ruleset import no_rules
from auditor.scanfiles import LazyStore
from auditor.store import Store
from auditor.store.schema import _script

SCRIPT = """
    -- a comment; with a semicolon
    CREATE TABLE a (x TEXT DEFAULT ';', y INTEGER);
    CREATE TABLE b (z INTEGER); CREATE INDEX b_z ON b (z);
    CREATE TRIGGER a_del AFTER DELETE ON a
    BEGIN
        UPDATE b SET z = z + 1;
        DELETE FROM b WHERE z > 10;
    END;
    INSERT INTO a (x, y) VALUES ('p;q', 1);
    -- the end
"""


def _traced(run: Callable[[Database], object]) -> tuple[list[str], list[tuple[str, str]]]:
    """The statements ``run`` executed in a migration's transaction, and the schema."""
    conn = sqlite3.connect(":memory:")
    db = Database(conn, execute_plugins=False)
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    with db.atomic():
        run(db)
    conn.set_trace_callback(None)
    return seen, conn.execute("SELECT name, sql FROM sqlite_master ORDER BY rowid").fetchall()


def test_a_migration_script_runs_the_statements_sqlite_utils_would() -> None:
    ours = _traced(lambda db: _script(db, SCRIPT))
    theirs = _traced(lambda db: db.executescript(SCRIPT))
    assert ours == theirs
    assert len(list(_iter_complete_sql_statements(SCRIPT))) == 6
    assert [name for name, _ in ours[1]] == ["a", "b", "b_z", "a_del"]


def test_a_script_outside_a_transaction_is_sqlite_utils_own() -> None:
    conn = sqlite3.connect(":memory:")
    db = Database(conn, execute_plugins=False)
    _script(db, SCRIPT)
    rows = conn.execute("SELECT x, y FROM a").fetchall()
    assert rows == [("p;q", 1)]
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"a", "b", "b_z", "a_del"} <= names


def test_no_rules_is_what_the_loader_returns_for_no_files() -> None:
    from auditor.rules import load_rulesets

    loaded, empty = load_rulesets([]), no_rules()
    assert (loaded.rules, dict(loaded.predicates), loaded.files, loaded.disabled) == (
        empty.rules,
        dict(empty.predicates),
        empty.files,
        empty.disabled,
    )
    assert loaded.sha256 == empty.sha256 and loaded.version == empty.version


def _write_config(tmp_path: Path, rules: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f"[rules]\n{rules}\n")
    return path


def test_an_engine_without_rules_builds_its_detector_only_when_asked(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "a.db")
    try:
        bare = build_engine(
            load_config(_write_config(tmp_path, "bundled = false")), store, tmp_path / "a.db"
        )
        assert bare._detector is None and bare.pipeline().detector is None
        assert bare.detector.ruleset is bare.ruleset and bare._detector is bare.detector
        ruled = build_engine(
            load_config(_write_config(tmp_path, "bundled = true")), store, tmp_path / "a.db"
        )
        assert ruled._detector is not None and ruled.pipeline().detector is ruled.detector
    finally:
        store.close()


def test_an_override_without_rule_files_is_still_an_error(tmp_path: Path) -> None:
    config = load_config(
        _write_config(tmp_path, "bundled = false\n[rules.override.nope]\ndisabled = true")
    )
    with pytest.raises(RulesetError, match="rules.override 'nope': no such rule"):
        load_config_rules(config)


def test_a_scan_without_rules_imports_no_detection_and_no_report_code(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text('192.0.2.1 - - [20/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "t"\n')
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from auditor.cli import cli\n"
        "args = ['scan', '--config', sys.argv[1], '--quiet', '--db', sys.argv[2], sys.argv[3]]\n"
        "r = CliRunner().invoke(cli, args)\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in sys.argv[4:] if m in sys.modules))\n"
    )
    mods = ["auditor.detect", "auditor.rules", "auditor.store.report_queries", "auditor.store.db"]
    config = _write_config(tmp_path, "bundled = false")
    out = subprocess.run(
        [sys.executable, "-c", code, str(config), str(tmp_path / "s.db"), str(log), *mods],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == str(["auditor.store.db"])  # the store, and nothing else of these


ROOT = Path(__file__).resolve().parent.parent
DEMO_LOG = ROOT / "examples" / "logs" / "api-access.log"


def test_a_new_store_is_created_now_and_opened_at_its_first_use(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "s.db"
    lazy = LazyStore.at(path)
    assert lazy.opened is None and lazy.new
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    lazy.register_source("api", "/var/log/api.log", "nginx-combined")
    store = lazy.get()
    try:
        assert lazy.opened is store and lazy.get() is store
        lazy.register_source("web", "/var/log/web.log", "auto")  # open: recorded at once
        rows = store.conn.execute("SELECT source, path, format FROM source_counters").fetchall()
        assert sorted(rows) == [
            ("api", "/var/log/api.log", "nginx-combined"),
            ("web", "/var/log/web.log", "auto"),
        ]
    finally:
        lazy.close()
    again = LazyStore.at(path)  # it exists now: opened at once
    try:
        assert again.opened is not None and not again.new
    finally:
        again.close()


def _scan(tmp_path: Path, db: Path, *paths: str, parallel: bool = True) -> dict[str, Any]:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[rules]\nbundled = false\n[[source]]\nname = "api"\npath = "{DEMO_LOG}"\n'
        'format = "nginx-combined"\n'
    )
    env = {**os.environ, "LOG_AUDITOR_CONFIG": ""}
    if parallel:
        env["LOG_AUDITOR_PARALLEL_MIN_BYTES"] = "0"
    out = subprocess.run(
        [sys.executable, "-m", "auditor", "scan", "--config", str(config), "--db", str(db)]
        + ["--json", *paths],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    ).stdout
    got: dict[str, Any] = orjson.loads(out)
    return got


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_scan_into_a_new_store_stores_what_one_into_an_open_store_does(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    Store.open(old).close()  # exists: opened before the workers start
    new = tmp_path / "new.db"
    assert _scan(tmp_path, old, str(DEMO_LOG))["events"] > 0
    new_summary = _scan(tmp_path, new, str(DEMO_LOG))
    assert new_summary == {**_scan(tmp_path, tmp_path / "x.db", str(DEMO_LOG)), "db": str(new)}
    for sql in (
        "SELECT source, path, format, lines_read, lines_parsed, bytes_read FROM source_counters",
        'SELECT file_id, source, path, "offset", size FROM positions ORDER BY file_id',
        "SELECT source, first_ms, last_ms, n FROM event_blocks ORDER BY id",
        "SELECT source, minute, requests FROM minute_stats ORDER BY source, minute",
        "SELECT name FROM _sqlite_migrations ORDER BY id",
    ):
        assert _rows(new, sql) == _rows(old, sql), sql
    assert _scan(tmp_path, new, str(DEMO_LOG))["lines"] == 0  # and resumes from it


def test_a_scan_that_writes_nothing_still_leaves_a_whole_new_store(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    summary = _scan(tmp_path, db, str(tmp_path / "nope.log"))
    assert summary["files"] == 0 and summary["skipped"][0]["reason"] == "no such file or directory"
    assert _rows(db, "SELECT source, format FROM source_counters") == [("api", "nginx-combined")]
    assert _rows(db, "SELECT kind FROM journal") == [("skipped",)]
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_a_new_store_that_cannot_open_fails_the_scan_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store opens in the writer thread, after the workers started: its error ends
    the scan as before (and the workers with it)."""
    from auditor.scanfiles import ParallelDecode, scan_paths

    def refuse(path: Path, *, check_same_thread: bool = True) -> Store:
        raise StoreError(f"{path}: cannot open the store: disk I/O error")

    config = load_config(_write_config(tmp_path, "bundled = false"))
    lazy = LazyStore.at(tmp_path / "s.db")
    engine = build_engine(config, lazy.opened, tmp_path / "s.db")
    engine.add_source("api", FormatSpec("nginx-combined"))
    monkeypatch.setattr(Store, "open", staticmethod(refuse))
    parallel = ParallelDecode(engine.redactor.key, lambda _: FormatSpec("nginx-combined"), 0, 2)
    with pytest.raises(StoreError, match="cannot open the store: disk I/O error"):
        scan_paths([str(DEMO_LOG)], lazy, engine.pipeline(), lambda _: "api", parallel=parallel)
    assert lazy.opened is None
