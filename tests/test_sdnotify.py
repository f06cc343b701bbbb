"""sd_notify over a real datagram socket, journald log lines, and `run` under a fake systemd."""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditor.sdnotify import (
    JournalFormatter,
    Notifier,
    priority,
    stderr_is_journal,
    watchdog_interval,
)
from daemon_helpers import Daemon, append, count, wait_for, write_config


@pytest.fixture
def dgram(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(5)
    yield s, path
    s.close()


def test_notify_sends_one_datagram_per_message(dgram: tuple[socket.socket, str]) -> None:
    sock, path = dgram
    n = Notifier(path)
    assert n.ready("3 sources")
    assert sock.recv(4096) == b"READY=1\nSTATUS=3 sources"
    assert n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.status("line one\nline two")
    assert sock.recv(4096) == b"STATUS=line one | line two"
    assert n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    assert n.reloading()
    msg = sock.recv(4096).decode()
    assert msg.startswith("RELOADING=1\nMONOTONIC_USEC=")
    n.close()


def test_notify_abstract_socket() -> None:
    name = f"log-auditor-test-{os.getpid()}-{time.monotonic_ns()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(5)
    try:
        n = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert s.recv(100) == b"READY=1"
        n.close()
    finally:
        s.close()


def test_notify_is_a_noop_outside_systemd(tmp_path: Path) -> None:
    assert not Notifier.from_env({}).ready()
    # A socket that went away is not an error either.
    n = Notifier(str(tmp_path / "gone.sock"))
    assert not n.ready()
    n.close()


def test_watchdog_interval() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    env = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(env) == 1.0


def _record(level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord("auditor.tail", level, __file__, 1, msg, None, None)


def test_journal_lines_carry_priority_prefixes() -> None:
    fmt = JournalFormatter(journal=True)
    assert fmt.format(_record(logging.ERROR, "disk full")) == "<3>auditor.tail: disk full"
    assert fmt.format(_record(logging.WARNING, "w")) == "<4>auditor.tail: w"
    assert fmt.format(_record(logging.INFO, "i")) == "<6>auditor.tail: i"
    assert priority(logging.DEBUG) == 7
    assert priority(logging.CRITICAL) == 2


def test_plain_lines_and_one_line_per_message() -> None:
    fmt = JournalFormatter(journal=False)
    assert fmt.format(_record(logging.ERROR, "a\nb")) == "ERROR auditor.tail: a | b"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    text = JournalFormatter(journal=True).format(rec)
    assert "\n" not in text and text.startswith("<3>x: failed | Traceback")


def test_stderr_is_journal_matches_device_and_inode(tmp_path: Path) -> None:
    f = (tmp_path / "err").open("w")
    st = os.fstat(f.fileno())
    assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, f)
    assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, f)
    assert not stderr_is_journal({}, f)
    assert not stderr_is_journal({"JOURNAL_STREAM": "x"}, io.StringIO())
    f.close()


def test_run_under_fake_systemd(tmp_path: Path, dgram: tuple[socket.socket, str]) -> None:
    """READY=1 once started, WATCHDOG=1 pings, STOPPING=1 and exit 0 on SIGTERM."""
    sock, path = dgram
    log = tmp_path / "access.log"
    append(log, range(3))
    config = write_config(tmp_path, [{"name": "api", "path": str(log)}])
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}  # ping every 0.2 s
    messages: list[str] = []

    def receive_until(field: str) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
            if any(field in m.split("\n") for m in messages):
                return
        raise AssertionError(f"no {field} in {messages}")

    with Daemon(config, env=env) as d:
        receive_until("READY=1")
        receive_until("WATCHDOG=1")
        wait_for(lambda: count(tmp_path / "audit.db") == 3, what="3 events")
        d.signal(signal.SIGTERM)
        receive_until("STOPPING=1")
        assert d.proc.wait(10) == 0
    ready = next(m for m in messages if "READY=1" in m.split("\n"))
    assert "STATUS=1 sources" in ready
