"""`log-auditor status`: what it shows of the store, for people and for scripts."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from test_tail import _OPEN, _close_tailers, check, make, write  # noqa: F401 - fixture used

from auditor.cli.common import iso_ms
from auditor.pipeline import Batch
from auditor.store import Store
from daemon_helpers import la

# CONTRACT.md's shape; more keys may come, none of these may go.
CONTRACT_KEYS = {"sources", "events", "findings"}
SOURCE_KEYS = {
    "name",
    "path",
    "format",
    "lines_read",
    "lines_parsed",
    "lines_unparsed",
    "bytes_read",
    "rotations",
    "last_event_at",
}


def test_status_shows_the_read_gaps(tmp_path: Path) -> None:
    """A file truncated with no copy of its unread part, found by the tailer and written
    as the daemon's writer writes it: `status` lists the gap (JSON and text)."""
    log = tmp_path / "access.log"
    write(log, "1", "2")
    t, sink, _ = make(log)
    check(t)
    os.truncate(log, 0)
    write(log, "new 1")
    check(t)
    (gap,) = sink.gaps
    db = tmp_path / "audit.db"
    store = Store.open(db)
    store.register_source("web", str(log), "nginx-combined")
    store.write(Batch(positions=list(sink.positions.values()), read_gaps=sink.gaps))
    store.close()

    out = la("status", "--db", str(db), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    st = orjson.loads(out.stdout)
    assert CONTRACT_KEYS <= st.keys() and "skipped_files" in st
    assert SOURCE_KEYS <= st["sources"][0].keys()
    at = iso_ms(gap.at_ms)
    assert st["read_gaps"] == [{"at": at, "source": "web", "detail": gap.describe()}]
    assert str(log) in gap.describe() and "after offset 4" in gap.describe()

    text = la("status", "--db", str(db), cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert f"read gap {str(at)[:19]} web: {gap.describe()}" in text.stdout.splitlines()


def test_status_without_read_gaps_has_an_empty_list(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    Store.open(db).close()
    st = orjson.loads(la("status", "--db", str(db), "--json", cwd=tmp_path).stdout)
    assert st["read_gaps"] == []
    assert "read gap" not in la("status", "--db", str(db), cwd=tmp_path).stdout
