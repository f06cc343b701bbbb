"""What `scan` does before its first line, made cheaper: the same results, checked here;
the figures are in the commit messages."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from sqlite_utils import Database
from sqlite_utils.db import _iter_complete_sql_statements

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
