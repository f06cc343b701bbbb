"""Twins and unrelated files beside the log, against the real daemon across a restart.

While the daemon is stopped: a ``cp -p`` copy of the log and a rename of the original
(the copy under the later name), or files whose names only start with the log's. The
store must hold every numbered line of the log once, and nothing of the other files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from daemon_helpers import (
    Daemon,
    append,
    assert_exactly_once,
    count,
    line,
    wait_for,
    write_config,
)


def _config(tmp_path: Path, log: Path) -> Path:
    return write_config(tmp_path, [{"name": "api", "path": str(log)}])


def test_twins_made_while_stopped_the_one_written_to_is_followed(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    db = tmp_path / "audit.db"
    config = _config(tmp_path, log)
    with log.open("a") as writer:  # the server: it holds the log and never reopens it
        writer.write("".join(line(n) for n in range(10)))
        writer.flush()
        with Daemon(config) as d:
            wait_for(lambda: count(db) == 10, what="first lines")
            assert d.stop() == 0
        shutil.copy2(log, tmp_path / "access.log.2")  # same length and time
        log.rename(tmp_path / "access.log.1")
        with Daemon(config) as d:
            wait_for(lambda: "resuming" in d.stderr, what="the rotated file resumed")
            writer.write("".join(line(n) for n in range(10, 20)))
            writer.flush()
            wait_for(lambda: count(db) == 20, what="the lines written after the restart")
            assert d.stop() == 0
    assert_exactly_once(db, range(20))


def test_files_named_after_the_log_are_not_read(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    db = tmp_path / "audit.db"
    config = _config(tmp_path, log)
    append(log, range(10))
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 10, what="first lines")
        assert d.stop() == 0
    # While stopped: notes and a backup beside the log (lines of their own), a rotation.
    append(tmp_path / "access.log.bak", range(5), prefix="bak")
    append(tmp_path / "access.log-old-notes.txt", range(5), prefix="notes")
    append(log, range(10, 20))
    log.rename(tmp_path / "access.log.1")
    append(log, range(20, 30))
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 30, what="the rotated file and the new one")
        assert d.stop() == 0
    assert_exactly_once(db, range(30))
    assert count(db, "bak") == 0 and count(db, "notes") == 0
