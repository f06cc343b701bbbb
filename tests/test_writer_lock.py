"""One process reads logs into a store at a time (``auditor.store.writerlock``): a scan
beside the daemon, or two scans at once, would otherwise each store the same lines."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from auditor.store.writerlock import StoreBusy, WriterLock, lock_path
from daemon_helpers import Daemon, append, assert_exactly_once, la, write_config


def holder(db: Path) -> subprocess.Popen[str]:
    """Another process that holds the store's lock until killed."""
    code = (
        "import sys, time; from pathlib import Path;"
        "from auditor.store.writerlock import WriterLock;"
        f"WriterLock(Path({str(db)!r})).acquire(); print('held', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGKILL: the kernel drops the lock of a process however it ends."""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()


def test_a_scan_into_a_store_another_process_writes_stops_and_says_who(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, range(50))
    db = tmp_path / "audit.db"
    other = holder(db)
    try:
        got = la("scan", "--db", str(db), str(log), cwd=tmp_path)
        assert got.returncode == 1
        assert f"process {other.pid} is reading logs into this store" in got.stderr
        assert str(db) in got.stderr and "Traceback" not in got.stderr
        assert not db.exists()  # nothing was opened or written
    finally:
        stop(other)
    # The holder is gone (killed: the kernel dropped its lock): the scan runs, once.
    assert la("scan", "--db", str(db), str(log), cwd=tmp_path).returncode == 0
    assert la("scan", "--db", str(db), str(log), cwd=tmp_path).returncode == 0
    assert_exactly_once(db, range(50))
    assert stat.S_IMODE(lock_path(db).stat().st_mode) == 0o600


def test_two_scans_at_once_store_each_line_once(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, range(20_000))
    db = tmp_path / "audit.db"
    cmd = [sys.executable, "-m", "auditor", "scan", "--quiet", "--db", str(db), str(log)]
    env = {**os.environ, "LOG_AUDITOR_CONFIG": ""}
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
        for _ in "ab"
    ]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert all("Traceback" not in e for e in errs), errs
    # Either one found the other at work (exit 1), or they ran one after the other.
    assert codes in ([0, 0], [0, 1])
    assert la("scan", "--db", str(db), str(log), cwd=tmp_path).returncode == 0
    assert_exactly_once(db, range(20_000))


def test_a_scan_beside_the_running_daemon_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, range(100))
    config = write_config(tmp_path, [{"name": "web", "path": str(log)}])
    daemon = Daemon(config)
    try:
        daemon.wait_started()
        got = la("scan", "--config", str(config), str(log), cwd=tmp_path)
        assert got.returncode == 1, got.stderr
        assert f"process {daemon.proc.pid} is reading logs into this store" in got.stderr
    finally:
        assert daemon.stop() == 0
    assert_exactly_once(tmp_path / "audit.db", range(100))


def test_a_second_daemon_on_the_same_store_does_not_start(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, range(10))
    config = write_config(tmp_path, [{"name": "web", "path": str(log)}])
    db = tmp_path / "audit.db"
    other = holder(db)
    try:
        got = la("run", "--config", str(config), "--once", cwd=tmp_path)
        assert got.returncode == 1
        assert "is reading logs into this store" in got.stderr
        assert "Traceback" not in got.stderr
    finally:
        stop(other)
    assert la("run", "--config", str(config), "--once", cwd=tmp_path).returncode == 0
    assert_exactly_once(db, range(10))


def test_the_lock_is_released_and_taken_again_in_one_process(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "audit.db"
    lock = WriterLock(db).acquire()
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    with pytest.raises(StoreBusy, match=f"process {os.getpid()} is reading logs"):
        WriterLock(db).acquire()
    lock.release()
    again = WriterLock(db).acquire()
    again.release()
    assert lock_path(db).read_text().strip() == str(os.getpid())
