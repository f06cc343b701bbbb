"""`log-auditor run` end to end: signals, reload, bad conditions, metrics. Real processes.

Every test starts the real CLI as a subprocess on real files in tmp_path and checks the
store afterwards: each numbered line stored exactly once, whatever happened in between.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon_helpers import (
    STOP_PROMISE,
    Daemon,
    append,
    assert_exactly_once,
    count,
    free_port,
    query,
    source_status,
    wait_for,
    without_file_access_override,
    write_config,
)
from factories import stored_events


def test_tails_appends_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, range(5))
    config = write_config(tmp_path, [{"name": "api", "path": str(log)}])
    db = tmp_path / "audit.db"
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 5, what="the first 5 lines")
        append(log, range(5, 10))
        wait_for(lambda: count(db) == 10, what="appended lines")
        # The unit's TimeoutStopSec (20 s) is the promise: systemd kills after it.
        assert d.stop(timeout=STOP_PROMISE) == 0
    assert_exactly_once(db, range(10))
    st = source_status(config, "api")
    assert st["lines_read"] == 10 and st["lines_parsed"] == 10 and st["last_error"] is None
    assert st["lag_bytes"] == 0


def test_start_end_is_the_default_on_first_start(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, range(100))  # history before the daemon's first start: not read
    config = write_config(tmp_path, [{"name": "api", "path": str(log), "start": "end"}])
    db = tmp_path / "audit.db"
    with Daemon(config) as d:
        # The tailer has opened the file at its end once that position is committed (the
        # source's path in `status` is there before: it is registered first).
        end = log.stat().st_size
        wait_for(
            lambda: (
                query(db, 'SELECT "offset" FROM positions WHERE source = ?', ("api",)) == [(end,)]
            ),
            what="the start at the end",
        )
        append(log, range(100, 110))
        wait_for(lambda: count(db) == 10, what="new lines")
        assert d.stop() == 0
    assert_exactly_once(db, range(100, 110))


def test_sigterm_with_a_backlog_commits_what_it_has_and_resumes(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, range(1))
    config = write_config(tmp_path, [{"name": "api", "path": str(log)}])
    db = tmp_path / "audit.db"
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 1, what="the first line")
        append(log, range(1, 80_001))
        time.sleep(0.3)
        assert d.stop(timeout=STOP_PROMISE) == 0  # within the unit's TimeoutStopSec
    partial = count(db)
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 80_001, timeout=60, what="the rest after restart")
        assert d.stop() == 0
    assert_exactly_once(db, range(80_001))
    assert partial <= 80_001


def test_run_once_reads_what_is_there_and_exits(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, range(20))
    config = write_config(tmp_path, [{"name": "api", "path": str(log)}])
    out = subprocess.run(
        [sys.executable, "-m", "auditor", "run", "--once", "--config", str(config)],
        check=False,
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert_exactly_once(tmp_path / "audit.db", range(20))


def test_bad_config_never_starts(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[daemon]\nbatch_lines = "many"\n')
    out = subprocess.run(
        [sys.executable, "-m", "auditor", "run", "--config", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "batch_lines" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_sighup_reloads_and_a_bad_config_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    append(a, range(3))
    append(b, range(3), prefix="b")
    config = write_config(tmp_path, [{"name": "a", "path": str(a)}])
    db = tmp_path / "audit.db"
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 3, what="source a")
        write_config(tmp_path, [{"name": "a", "path": str(a)}, {"name": "b", "path": str(b)}])
        d.signal(signal.SIGHUP)
        wait_for(lambda: count(db, "b") == 3, what="source b after reload")
        config.write_text(config.read_text() + "\nbogus_key = 1\n")
        d.signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in d.stderr, what="refusal")
        assert "bogus_key" in d.stderr
        append(a, range(3, 6))
        append(b, range(3, 6), prefix="b")
        wait_for(lambda: count(db) == 6 and count(db, "b") == 6, what="both still running")
        assert d.stop() == 0
    assert_exactly_once(db, range(6))
    assert_exactly_once(db, range(6), prefix="b")


def test_missing_source_is_reported_and_picked_up_when_it_appears(tmp_path: Path) -> None:
    good, later = tmp_path / "good.log", tmp_path / "later" / "access.log"
    append(good, range(3))
    config = write_config(
        tmp_path,
        [{"name": "good", "path": str(good)}, {"name": "later", "path": str(later)}],
    )
    db = tmp_path / "audit.db"
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 3, what="the good source")
        wait_for(
            lambda: "does not exist" in str(source_status(config, "later").get("last_error")),
            what="the missing source in status",
        )
        # Logged before it is recorded, but read from the pipe by another thread of ours.
        wait_for(lambda: "later" in d.stderr and "does not exist" in d.stderr, what="the log line")
        later.parent.mkdir()
        append(later, range(3), prefix="later")
        wait_for(lambda: count(db, "later") == 3, what="the late source")
        wait_for(
            lambda: source_status(config, "later").get("last_error", 1) is None, what="cleared"
        )
        assert d.stop() == 0


def test_permission_denied_is_reported_retried_and_others_go_on(tmp_path: Path) -> None:
    good, secret = tmp_path / "good.log", tmp_path / "secret.log"
    append(good, range(3))
    append(secret, range(3), prefix="secret")
    secret.chmod(0)
    config = write_config(
        tmp_path,
        [{"name": "good", "path": str(good)}, {"name": "secret", "path": str(secret)}],
    )
    db = tmp_path / "audit.db"
    with Daemon(config, prefix=without_file_access_override()) as d:
        wait_for(lambda: count(db) == 3, what="the good source")
        wait_for(
            lambda: "permission denied" in str(source_status(config, "secret").get("last_error")),
            what="the error in status",
        )
        wait_for(
            lambda: "ERROR" in d.stderr and "permission denied" in d.stderr, what="the log line"
        )
        append(good, range(3, 6))
        wait_for(lambda: count(db) == 6, what="the good source going on")
        secret.chmod(0o644)
        wait_for(lambda: count(db, "secret") == 3, what="the retry")
        wait_for(
            lambda: source_status(config, "secret").get("last_error", 1) is None, what="cleared"
        )
        assert d.stop() == 0
    assert_exactly_once(db, range(3), prefix="secret")


def test_file_replaced_by_a_directory(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, range(3))
    config = write_config(tmp_path, [{"name": "api", "path": str(log)}])
    db = tmp_path / "audit.db"
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 3, what="lines")
        log.unlink()
        log.mkdir()
        wait_for(
            lambda: "is a directory" in str(source_status(config, "api").get("last_error")),
            what="the error in status",
        )
        log.rmdir()
        append(log, range(3, 6))
        wait_for(lambda: count(db) == 6, what="the file back")
        assert d.stop() == 0
    assert_exactly_once(db, range(6))


def test_log_directory_deleted_and_recreated(tmp_path: Path) -> None:
    logs = tmp_path / "nginx"
    logs.mkdir()
    log = logs / "access.log"
    append(log, range(3))
    config = write_config(tmp_path, [{"name": "api", "path": str(log)}])
    db = tmp_path / "audit.db"
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 3, what="lines")
        shutil.rmtree(logs)
        time.sleep(1.0)
        logs.mkdir()
        append(log, range(3, 6))
        wait_for(lambda: count(db) == 6, what="lines in the recreated directory")
        assert d.stop() == 0
    assert_exactly_once(db, range(6))


def test_store_write_failure_is_retried_without_loss(tmp_path: Path) -> None:
    """A full disk, simulated with a file-size limit on the daemon process."""
    log = tmp_path / "access.log"
    append(log, range(10))
    config = write_config(tmp_path, [{"name": "api", "path": str(log)}])
    db = tmp_path / "audit.db"
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 10, what="the first lines")
        _, hard = resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (1, hard))
        append(log, range(10, 30_010))
        wait_for(lambda: "cannot write to the store" in d.stderr, what="the write error")
        assert count(db) == 10
        resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
        wait_for(lambda: count(db) == 30_010, timeout=60, what="the retried batches")
        assert "accepts writes again" in d.stderr
        assert d.stop() == 0
    assert_exactly_once(db, range(30_010))


def test_metrics_endpoint_on_loopback(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, range(5))
    port = free_port()
    config = write_config(
        tmp_path,
        [{"name": "api", "path": str(log)}],
        daemon={"metrics_listen": f"127.0.0.1:{port}"},
    )
    db = tmp_path / "audit.db"
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 5, what="lines")

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return str(r.read().decode())

        wait_for(lambda: 'log_auditor_lines_read_total{source="api"} 5' in scrape(), what="5")
        text = scrape()
        for name in (
            "log_auditor_lines_parsed_total",
            "log_auditor_lines_unparsed_total",
            "log_auditor_lines_truncated_total",
            "log_auditor_bytes_read_total",
            "log_auditor_rotations_total",
            "log_auditor_lag_bytes",
            "log_auditor_last_event_timestamp_seconds",
            "log_auditor_queue_lines",
            "log_auditor_batch_commit_seconds_count",
        ):
            assert name in text
        assert d.stop() == 0


def test_metrics_refuse_a_non_loopback_address(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], daemon={"metrics_listen": "0.0.0.0:9464"})
    out = subprocess.run(
        [sys.executable, "-m", "auditor", "run", "--config", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "loopback" in out.stderr


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs /proc")
def test_truncated_lines_are_counted(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with log.open("w") as f:
        f.write("x" * 5000 + "\n")
    append(log, range(2))
    config = write_config(
        tmp_path, [{"name": "api", "path": str(log)}], daemon={"max_line_bytes": 1000}
    )
    with Daemon(config) as d:
        wait_for(lambda: count(tmp_path / "audit.db") == 2, what="lines")
        wait_for(lambda: source_status(config, "api").get("lines_truncated") == 1, what="counted")
        assert d.stop() == 0


def test_a_truncation_without_a_copy_is_journalled_once(tmp_path: Path) -> None:
    """copytruncate with its copy lost: the read gap reaches the store (journal kind
    ``read-gap``, with the file and the offset), once, and the file's new lines are read."""
    log = tmp_path / "access.log"
    append(log, range(5))
    read = log.stat().st_size
    config = write_config(tmp_path, [{"name": "api", "path": str(log)}])
    db = tmp_path / "audit.db"
    gaps = "SELECT source, detail FROM journal WHERE kind = 'read-gap'"
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 5, what="the first 5 lines")
        os.truncate(log, 0)
        append(log, range(3), prefix="after")  # another first line: a file anew
        wait_for(lambda: count(db, "after") == 3, what="the lines after the truncation")
        wait_for(lambda: bool(query(db, gaps)), what="the read gap in the journal")
        assert d.stop() == 0
    ((source, detail),) = query(db, gaps)
    assert source == "api"
    assert str(detail).startswith(f"{log} was truncated (")
    assert f"anything after offset {read:,} was not read" in str(detail)
    assert_exactly_once(db, range(5))
    assert_exactly_once(db, range(3), prefix="after")


def test_reload_restarts_a_changed_source_without_doubling(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, range(1000))
    config = write_config(tmp_path, [{"name": "api", "path": str(log)}])
    db = tmp_path / "audit.db"
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 1000, what="first lines")
        # The same source, polled now: it restarts from its committed positions.
        write_config(tmp_path, [{"name": "api", "path": str(log), "poll": True}])
        append(log, range(1000, 2000))
        d.signal(signal.SIGHUP)
        append(log, range(2000, 3000))
        wait_for(lambda: "reloaded" in d.stderr, what="the reload")
        append(log, range(3000, 4000))
        wait_for(lambda: count(db) == 4000, what="lines across the reload")
        assert d.stop() == 0
    assert_exactly_once(db, range(4000))


def test_reload_with_a_bad_rule_file_keeps_the_running_rules(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, range(3))
    config = write_config(tmp_path, [{"name": "api", "path": str(log)}])
    db = tmp_path / "audit.db"
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 3, what="first lines")
        bad = tmp_path / "bad.toml"
        bad.write_text('[[rule]]\nid = "x"\nnot_a_key = 1\n')
        config.write_text(
            config.read_text().replace(
                "[rules]\nbundled = false", f'[rules]\nbundled = false\npaths = ["{bad}"]'
            )
        )
        d.signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in d.stderr, what="the refusal")
        assert "bad.toml" in d.stderr
        append(log, range(3, 6))
        wait_for(lambda: count(db) == 6, what="lines after the refused reload")
        assert d.stop() == 0
    assert_exactly_once(db, range(6))


def test_poll_mode_source(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, range(3))
    config = write_config(tmp_path, [{"name": "api", "path": str(log), "poll": True}])
    db = tmp_path / "audit.db"
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 3, what="first lines")
        log.rename(tmp_path / "access.log.1")
        append(log, range(3, 6))
        wait_for(lambda: count(db) == 6, what="lines found by polling")
        assert d.stop() == 0
    assert_exactly_once(db, range(6))


def test_sigterm_right_after_sighup_still_stops(tmp_path: Path) -> None:
    """A reload in flight (restarting a changed source) never holds up the stop."""
    log = tmp_path / "access.log"
    append(log, range(3))
    config = write_config(tmp_path, [{"name": "api", "path": str(log)}])
    db = tmp_path / "audit.db"
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 3, what="first lines")
        other = tmp_path / "other.log"
        append(other, range(3, 6))
        config.write_text(config.read_text().replace(str(log), str(other)))
        d.signal(signal.SIGHUP)
        d.signal(signal.SIGTERM)
        assert d.stop() == 0


W3C_HEADER = [
    "#Software: Microsoft Internet Information Services 10.0",
    (
        "#Fields: date time cs-method cs-uri-stem cs-uri-query c-ip c-port cs-version cs-host"
        " sc-status sc-bytes cs-bytes time-taken X-Forwarded-For"
    ),
]


def w3c_line(n: int) -> str:
    return (
        f"2026-11-20 09:00:{n:02d} GET /w3c/{n} - 192.0.2.{n + 1} 50123 HTTP/1.1"
        " shop.example.com 404 5120 310 42 198.51.100.7"
    )


def _events(db: Path) -> list[dict[str, Any]]:
    try:
        return stored_events(db)
    except sqlite3.Error:
        return []  # not created yet


def test_a_w3c_file_resumed_mid_way_keeps_its_columns(tmp_path: Path) -> None:
    """After a restart the daemon resumes mid-file; the #Fields header at the file's start
    still names the columns of the lines it reads next."""
    log = tmp_path / "u_ex261120.log"
    log.write_text("\n".join([*W3C_HEADER, w3c_line(0), w3c_line(1)]) + "\n")
    config = write_config(tmp_path, [{"name": "iis", "path": str(log), "format": "w3c"}])
    db = tmp_path / "audit.db"
    with Daemon(config) as d:
        wait_for(lambda: len(_events(db)) == 2, what="first lines")
        assert d.stop() == 0
    with log.open("a") as f:
        f.write(w3c_line(2) + "\n" + w3c_line(3) + "\n")
    with Daemon(config) as d:
        wait_for(lambda: len(_events(db)) == 4, what="lines after the restart")
        assert d.stop() == 0
    got = {e["path"]: e for e in _events(db)}
    for n in range(4):
        e = got[f"/w3c/{n}"]
        assert (e["client_ip"], e["status"], e["host"]) == (
            f"192.0.2.{n + 1}",
            404,
            "shop.example.com",
        )
    status = subprocess.run(
        [sys.executable, "-m", "auditor", "status", "--db", str(db), "--json"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    src = orjson.loads(status.stdout)["sources"][0]
    assert (src["lines_parsed"], src["lines_unparsed"]) == (4, 0)


def test_a_restart_with_nothing_new_stopped_at_once_exits_0(tmp_path: Path) -> None:
    """What test_sigterm_with_a_backlog does when the first daemon committed it all: the
    second is stopped as soon as it is up (SIGTERM as soon as it has started)."""
    log = tmp_path / "access.log"
    append(log, range(3))
    config = write_config(tmp_path, [{"name": "api", "path": str(log)}])
    db = tmp_path / "audit.db"
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 3, what="the lines")
        assert d.stop() == 0
    with Daemon(config) as d:
        assert d.stop() == 0
    assert_exactly_once(db, range(3))
