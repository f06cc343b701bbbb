"""Every kind of rotation against the real daemon, with restarts and SIGKILLs.

The daemon runs as a subprocess (`python -m auditor run`); files are rotated for real
(rename, copytruncate, delete, symlink swap, gzip) and the store must hold every
numbered line exactly once.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
import signal
import sys
from functools import partial
from pathlib import Path
from types import ModuleType

import pytest

from daemon_helpers import (
    ROOT,
    Daemon,
    append,
    assert_exactly_once,
    count,
    line,
    source_status,
    wait_for,
    write_config,
)


def _soak_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak", ROOT / "benchmarks" / "soak.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = mod
    spec.loader.exec_module(mod)
    return mod


def _has(db: Path, n: int) -> bool:
    return count(db) == n


def _config(tmp_path: Path, log: Path) -> Path:
    return write_config(tmp_path, [{"name": "api", "path": str(log)}])


def test_rename_create_and_copytruncate_while_running(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, range(100))
    db = tmp_path / "audit.db"
    with Daemon(_config(tmp_path, log)) as d:
        wait_for(lambda: count(db) == 100, what="first lines")
        n = 100
        for k in range(1, 7):
            append(log, range(n, n + 500))
            n += 500
            if k % 2:
                log.rename(tmp_path / f"access.log.{k}")
                append(tmp_path / f"access.log.{k}", range(n, n + 10))  # a late writer
                n += 10
            else:
                shutil.copyfile(log, tmp_path / f"access.log.{k}")
                os.truncate(log, 0)
            append(log, range(n, n + 200))
            n += 200
            wait_for(partial(_has, db, n), what=f"lines after rotation {k}")
        assert d.stop() == 0
    assert_exactly_once(db, range(n))
    assert source_status(_config(tmp_path, log), "api")["rotations"] == 6


def test_delete_and_recreate_while_running(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, range(10))
    db = tmp_path / "audit.db"
    with Daemon(_config(tmp_path, log)) as d:
        wait_for(lambda: count(db) == 10, what="first lines")
        with log.open("a") as held:
            log.unlink()
            held.write("".join(line(n) for n in range(10, 15)))  # a writer not reopened yet
        append(log, range(15, 20))
        wait_for(lambda: count(db) == 20, what="the deleted file's tail and the new file")
        assert d.stop() == 0
    assert_exactly_once(db, range(20))


def test_kubernetes_symlink_swap(tmp_path: Path) -> None:
    pods = tmp_path / "pods" / "default_api-7d4_uid" / "api"
    pods.mkdir(parents=True)
    containers = tmp_path / "containers"
    containers.mkdir()
    link = containers / "api-7d4_default_api-abc.log"
    append(pods / "0.log", range(10))
    link.symlink_to(pods / "0.log")
    db = tmp_path / "audit.db"
    with Daemon(write_config(tmp_path, [{"name": "k8s", "path": str(containers / "*.log")}])) as d:
        wait_for(lambda: count(db) == 10, what="first container log")
        append(pods / "0.log", range(10, 20))  # written through the target's directory
        wait_for(lambda: count(db) == 20, what="appends to the link's target")
        # Container restart: a new target, the link swapped atomically.
        append(pods / "1.log", range(20, 30))
        tmp_link = containers / ".swap"
        tmp_link.symlink_to(pods / "1.log")
        tmp_link.replace(link)
        wait_for(lambda: count(db) == 30, what="the new target")
        # kubelet rotation of the new target: rename and a fresh 1.log.
        append(pods / "1.log", range(30, 40))
        (pods / "1.log").rename(pods / "1.log.20261120-120000")
        append(pods / "1.log", range(40, 50))
        wait_for(lambda: count(db) == 50, what="after kubelet rotation")
        assert d.stop() == 0
    assert_exactly_once(db, range(50))


def test_rotated_and_compressed_while_stopped(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, range(100))
    db = tmp_path / "audit.db"
    config = _config(tmp_path, log)
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 100, what="first lines")
        assert d.stop() == 0
    # While stopped: more lines, two rotations (one compressed), a new file.
    append(log, range(100, 150))
    log.rename(tmp_path / "access.log.2")
    append(log, range(150, 200))
    log.rename(tmp_path / "access.log.1")
    with (
        (tmp_path / "access.log.2").open("rb") as src,
        gzip.open(tmp_path / "access.log.2.gz", "wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    (tmp_path / "access.log.2").unlink()
    append(log, range(200, 250))
    with Daemon(config) as d:
        wait_for(lambda: count(db) == 250, what="everything owed")
        assert d.stop() == 0
    assert_exactly_once(db, range(250))


def test_sigkill_at_random_moments_with_rotations_short_soak(tmp_path: Path) -> None:
    """The short soak: 20,000 lines, rotations every 0.25 s, 3 SIGKILLs."""
    soak = _soak_module()
    res = soak.soak(
        tmp_path, total=20_000, rate=20_000, rotate_every=0.25, kills=3, seed=4, rules=False
    )
    assert res.exit_code == 0
    assert not res.missing, f"missing {res.missing[:20]}"
    assert not res.doubled, f"doubled {res.doubled[:20]}"
    assert res.stored == 20_000
    assert res.aggregates == (20_000, 20_000)  # per minute and per client, exactly once too
    assert res.rotations["rename"] >= 1 and res.rotations["copytruncate"] >= 1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_full_soak_200k_lines_10_kills(tmp_path: Path) -> None:
    """The done-when soak: 200,000 lines at 20,000/s, rotation every 2 s, 10 SIGKILLs."""
    soak = _soak_module()
    res = soak.soak(tmp_path, total=200_000, rate=20_000, rotate_every=2.0, kills=10, seed=11)
    print(res.summary())
    assert res.ok, res.summary()


def test_sigkill_while_draining_a_rotated_file(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, range(1))
    db = tmp_path / "audit.db"
    config = _config(tmp_path, log)
    d = Daemon(config)
    wait_for(lambda: count(db) == 1, what="first line")
    append(log, range(1, 60_001))
    log.rename(tmp_path / "access.log.1")
    append(log, range(60_001, 60_101))
    wait_for(lambda: count(db) > 1, what="some progress")
    d.proc.send_signal(signal.SIGKILL)
    d.kill()
    with Daemon(config) as d2:
        wait_for(lambda: count(db) == 60_101, timeout=60, what="the rest after SIGKILL")
        assert d2.stop() == 0
    assert_exactly_once(db, range(60_101))
