"""What `scan` does before its first line, made cheaper: the same results, checked here;
the figures are in the commit messages."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlite_utils import Database
from sqlite_utils.db import _iter_complete_sql_statements

from auditor.config import load_config
from auditor.engine import build_engine, load_config_rules
from auditor.errors import RulesetError
from auditor.ruleset import no_rules
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
