"""A scan's decode workers are forked from it (``DecodePool(fork=True)``) while it has no
other thread, else started as new processes: either way they decode alike, each keeps
only its own two pipes of the parent's files, and nothing the parent buffered comes out
twice."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from auditor.decodeworker import END_PLAIN, DecodePool, _Forked, can_fork
from auditor.formats import FormatSpec

ROOT = Path(__file__).resolve().parent.parent
DEMO_LOG = ROOT / "examples" / "logs" / "api-access.log"


def _decode_all(pool: DecodePool, data: bytes) -> list[tuple[object, ...]]:
    spec = FormatSpec("nginx-combined")
    for i, w in enumerate(pool.workers):
        w.send(f"f{i}", "api", spec, "/x.log", 0, data, END_PLAIN)
    out: list[tuple[object, ...]] = []
    for w in pool.workers:
        got = w.receive()
        out.append(tuple((e.timestamp, e.path, e.status, e.client_ip) for e in got.batch.events))
    return out


def test_forked_and_started_workers_decode_alike() -> None:
    if not can_fork():
        pytest.skip("this process runs other threads: workers are not forked")
    data = DEMO_LOG.read_bytes()
    got = []
    for fork in (True, False):
        pool = DecodePool(b"k" * 32, 65536, 2, fork=fork)
        try:
            kinds = {type(w._proc) for w in pool.workers}
            assert kinds == ({_Forked} if fork else {subprocess.Popen})
            got.append(_decode_all(pool, data))
        finally:
            pool.close()
    assert got[0] == got[1]
    assert got[0][0] and got[0][0] == got[0][1]


def test_no_fork_while_another_thread_runs() -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert not can_fork()
        pool = DecodePool(b"k" * 32, 65536, 1, fork=True)
        try:
            assert isinstance(pool.workers[0]._proc, subprocess.Popen)
        finally:
            pool.close()
    finally:
        stop.set()
        t.join()


def test_a_forked_worker_keeps_only_its_pipes() -> None:
    """Another worker's task pipe held open in a worker would hide from that worker the
    parent's closing it (a killed parent)."""
    if not can_fork():
        pytest.skip("this process runs other threads: workers are not forked")
    pool = DecodePool(b"k" * 32, 65536, 2, fork=True)
    try:
        _decode_all(pool, DEMO_LOG.read_bytes()[:2000])  # both are up and serving
        for w in pool.workers:
            fds = sorted(int(fd) for fd in os.listdir(f"/proc/{w._proc.pid}/fd"))
            assert fds[:3] == [0, 1, 2]
            assert len(fds) == 5, fds  # its task and result pipes
            with open(f"/proc/{w._proc.pid}/fd/0", "rb") as f:
                assert f.read(1) == b""  # stdin: /dev/null
    finally:
        pool.close()
    assert all(w._proc.poll() == 0 for w in pool.workers)


def test_what_the_parent_buffered_comes_out_once(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from auditor.decodeworker import DecodePool\n"
        "sys.stdout.write('buffered before the fork\\n')\n"  # stdout is a pipe: buffered
        "pool = DecodePool(b'k' * 32, 65536, 2, fork=True)\n"
        "print(type(pool.workers[0]._proc).__name__)\n"
        "pool.close()\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert r.stdout == "buffered before the fork\n_Forked\n"
    assert r.stderr == ""
