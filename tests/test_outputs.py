"""Outputs: findings leave the host exactly once per output. Real sockets, files, stores.

The delivery loop (``OutputRunner``) runs over a real SQLite store against real
receivers: a unix datagram socket and a TCP listener speaking syslog, an HTTP server on
loopback that fails and recovers, rotated files. The end-to-end test runs the real
``log-auditor run`` with a webhook output through a SIGKILL and a SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditor.config import OutputConfig, parse_config
from auditor.errors import ConfigError
from auditor.model import Hit, Severity
from auditor.outputs.address import FACILITIES, parse_syslog_address
from auditor.outputs.build import build_sink, load_secrets
from auditor.outputs.delivery import OutputRunner, backoff
from auditor.outputs.filesink import FileSink
from auditor.outputs.service import Outputs
from auditor.outputs.sink import Sink
from auditor.outputs.syslog import SD_ID, SYSLOG_SEVERITY, SyslogSink
from auditor.outputs.webhook import (
    FINDING_HEADER,
)
from auditor.pipeline import Batch
from auditor.store import Store
from daemon_helpers import (
    STOP_PROMISE,
    WAIT_SECONDS,
    Daemon,
    finding_lines,
    free_port,
    query,
    status,
    wait_for,
    write_config,
)
from receivers import Receiver

T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
SECRET = b"test-hmac-secret"
SEVERITIES = (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)


# -- building blocks -------------------------------------------------------------------


def hit(n: int, **kw: Any) -> Hit:
    base: dict[str, Any] = {
        "rule_id": f"test.rule-{n % 3}",
        "title": "A test finding",
        "category": "pii-in-url",
        "severity": SEVERITIES[n % 4],
        "key": f"key-{n}",
        "timestamp": T0 + timedelta(seconds=n),
        "first_seen": T0 + timedelta(seconds=n),
        "count": 1,
        "source": "api",
        "client_ip": "198.51.100.7",
        "evidence": f"GET /x/{n}?email=j***@example.org -> 200",
        "controls": ("PCI-DSS-4.0.1:3.5.1", "GDPR:Art.5(1)(c)"),
        "pii_type": "email",
    }
    base.update(kw)
    return Hit(**base)


def add_findings(db: Path, hits: list[Hit]) -> None:
    store = Store.open(db)
    try:
        store.write(Batch(hits=hits))
    finally:
        store.close()


def finding_ids(db: Path) -> list[str]:
    return [str(r[0]) for r in query(db, "SELECT id FROM findings ORDER BY rowid")]


def output(**kw: Any) -> OutputConfig:
    """An output as the config reader makes it (fast retries for the tests)."""
    doc = {"name": "out", "retry_initial": 0.01, "retry_max": 0.05, "start": "beginning", **kw}
    return parse_config({"output": [doc]}, "test.toml").outputs[0]


def deliver(
    out: OutputConfig,
    db: Path,
    sink: Sink,
    until: Callable[[OutputRunner], bool],
    timeout: float = WAIT_SECONDS,
) -> OutputRunner:
    """Run one output's delivery loop until ``until(runner)``; then stop it as SIGTERM does."""
    runner = OutputRunner(out, db, sink, poll=0.02)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while not until(runner):
                if task.done():
                    task.result()
                if loop.time() > deadline:
                    raise AssertionError(f"timed out; stats {runner.stats}")
                await asyncio.sleep(0.01)
        finally:
            stop.set()
            await task

    asyncio.run(main())
    return runner


# -- RFC 5424 parsing (what a receiver does) --------------------------------------------

_HEADER = re.compile(r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) ")
_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$")


def parse_sd(text: str) -> tuple[dict[str, dict[str, str]], str]:
    """Structured data (RFC 5424 6.3) → {sd_id: {name: value}}, and the rest after it."""
    if text.startswith("- "):
        return {}, text[2:]
    out: dict[str, dict[str, str]] = {}
    i = 0
    while i < len(text) and text[i] == "[":
        j = i + 1
        while text[j] not in " ]":
            j += 1
        sd_id, params = text[i + 1 : j], {}
        i = j
        while text[i] == " ":
            eq = text.index("=", i)
            name = text[i + 1 : eq]
            assert re.fullmatch(r"[!-~]{1,32}", name) and not set(name) & set('= ]"'), name
            assert text[eq + 1] == '"'
            k, value = eq + 2, []
            while text[k] != '"':
                if text[k] == "\\" and text[k + 1] in '"\\]':
                    k += 1
                else:
                    assert text[k] not in '"]', f"unescaped {text[k]!r} in {text[i:k]!r}"
                value.append(text[k])
                k += 1
            params[name] = "".join(value)
            i = k + 1
        assert text[i] == "]"
        out[sd_id] = params
        i += 1
    assert text[i] == " ", "SD is followed by a space and the MSG"
    return out, text[i + 1 :]


def parse_5424(raw: bytes) -> dict[str, Any]:
    text = raw.decode("utf-8")
    m = _HEADER.match(text)
    assert m, raw[:120]
    pri, ts, host, app, procid, msgid = m.groups()
    sd, msg = parse_sd(text[m.end() :])
    assert _TS.match(ts), ts
    for field in (host, app, procid, msgid):
        assert all(33 <= ord(c) <= 126 for c in field)
    return {
        "facility": int(pri) // 8,
        "severity": int(pri) % 8,
        "host": host,
        "app": app,
        "procid": procid,
        "msgid": msgid,
        "sd": sd,
        "msg": orjson.loads(msg),
    }


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: unix socket paths are limited to ~100 bytes."""
    d = Path(tempfile.mkdtemp(prefix="la-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# -- syslog ---------------------------------------------------------------------------


def test_syslog_unix_datagram_burst_is_well_formed_rfc5424(tmp_path: Path, short_dir: Path) -> None:
    db = tmp_path / "audit.db"
    weird_source = 'we"ird]sr\\c'
    add_findings(db, [hit(n, source=weird_source if n == 7 else "api") for n in range(40)])
    path = short_dir / "log.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(10)
    got: list[bytes] = []

    def receive() -> None:  # a datagram queue holds ~10 messages: read as they come
        while len(got) < 40:
            got.append(listener.recv(65536))

    reader = threading.Thread(target=receive, daemon=True)
    reader.start()
    try:
        out = output(type="syslog", address=f"unix://{path}", facility="local3")
        sink = SyslogSink(out.address, out.facility, hostname="auditor-host")
        deliver(out, db, sink, lambda r: r.stats.delivered == 40)
        reader.join(10)
    finally:
        listener.close()
        sink.close()

    stored = {f: n for n, f in enumerate(finding_ids(db))}
    msgs = [parse_5424(raw) for raw in got]
    assert sorted(m["msg"]["id"] for m in msgs) == sorted(stored)
    for m in msgs:
        sd = m["sd"][SD_ID]
        n = stored[m["msg"]["id"]]
        sev = SEVERITIES[n % 4]
        assert m["facility"] == FACILITIES["local3"]
        assert m["severity"] == SYSLOG_SEVERITY[int(sev)]
        assert (m["host"], m["app"], m["procid"]) == (
            "auditor-host",
            "log-auditor",
            str(os.getpid()),
        )
        assert m["msgid"] == "pii-in-url"
        assert sd["id"] == m["msg"]["id"] and sd["rule"] == f"test.rule-{n % 3}"
        assert sd["severity"] == str(sev) == m["msg"]["severity"]
        assert sd["controls"] == "PCI-DSS-4.0.1:3.5.1 GDPR:Art.5(1)(c)"
        assert sd["source"] == (weird_source if n == 7 else "api")  # escaped and back


class _TcpSyslog:
    """A TCP syslog receiver that reads octet-counted frames (RFC 6587 3.4.1)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.messages: list[bytes] = []
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            buf = b""
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                buf += data
                while b" " in buf:
                    length, _, rest = buf.partition(b" ")
                    if not length.isdigit() or length.startswith(b"0"):
                        self.errors.append(f"bad frame: {buf[:40]!r}")
                        return
                    if len(rest) < int(length):
                        break
                    self.messages.append(rest[: int(length)])
                    buf = rest[int(length) :]

    def close(self) -> None:
        self.server.close()
        self._thread.join(5)


def test_syslog_tcp_uses_octet_counting(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    add_findings(db, [hit(n) for n in range(25)])
    rx = _TcpSyslog()
    try:
        out = output(type="syslog", address=f"tcp://127.0.0.1:{rx.port}")
        sink = SyslogSink(out.address, out.facility)
        deliver(out, db, sink, lambda r: r.stats.delivered == 25)
        sink.close()  # the receiver sees EOF after the last frame
        wait_for(lambda: len(rx.messages) == 25 or bool(rx.errors), what="25 frames")
    finally:
        rx.close()
    assert not rx.errors
    msgs = [parse_5424(m) for m in rx.messages]
    assert Counter(m["msg"]["id"] for m in msgs) == Counter(finding_ids(db))
    assert {m["facility"] for m in msgs} == {FACILITIES["authpriv"]}  # the default


@pytest.mark.skipif(shutil.which("rsyslogd") is None, reason="rsyslogd is not installed")
def test_rsyslogd_accepts_the_messages(tmp_path: Path, short_dir: Path) -> None:
    sock, out_file = short_dir / "rs.sock", tmp_path / "received.log"
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(
        f'module(load="imuxsock" SysSock.Use="off")\n'
        f'input(type="imuxsock" Socket="{sock}" UseSpecialParser="off")\n'
        f'template(name="t" type="string" string="%msgid% %structured-data% %msg%\\n")\n'
        f'*.* action(type="omfile" file="{out_file}" template="t")\n'
    )
    proc = subprocess.Popen(
        ["rsyslogd", "-n", "-f", str(conf), "-i", str(tmp_path / "rs.pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(sock.exists, what="rsyslogd's socket")
        db = tmp_path / "audit.db"
        add_findings(db, [hit(n) for n in range(5)])
        out = output(type="syslog", address=f"unix://{sock}")
        deliver(out, db, build_sink(out, {}), lambda r: r.stats.delivered == 5)
        wait_for(lambda: out_file.exists() and len(out_file.read_text().splitlines()) == 5)
    finally:
        proc.terminate()
        proc.wait(10)
    for line in out_file.read_text().splitlines():
        assert line.startswith(f"pii-in-url [{SD_ID} id=")


# -- webhook --------------------------------------------------------------------------


def test_webhook_recovers_from_failures_and_delivers_each_finding_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "audit.db"
    add_findings(db, [hit(n) for n in range(12)])
    receiver.failures = [500, "drop", 500, "drop", 503]
    out = output(type="webhook", url=receiver.url, secret=SECRET.decode(), shape="ecs")
    sink = build_sink(out, load_secrets(parse_config({"output": [_doc(out)]}, "t.toml")))
    runner = deliver(out, db, sink, lambda r: r.stats.delivered == 12)
    assert receiver.ids() == Counter(finding_ids(db))
    assert runner.stats.failed == 5 and runner.stats.pending == 0 and runner.stats.up
    receiver.check_signatures(SECRET)
    for headers, body in receiver.received:
        doc = orjson.loads(body)
        assert headers["Content-Type"] == "application/json"
        assert doc["event"]["id"] == headers[FINDING_HEADER]  # ECS
    # A second run of the loop (a restart) sends nothing again.
    more = deliver(out, db, build_sink(out, {"out": SECRET}), lambda r: r.stats.pending == 0)
    assert more.stats.delivered == 0 and receiver.ids() == Counter(finding_ids(db))
    # Lasting totals are in the store.
    row = query(db, "SELECT delivered, failed, dropped, pending FROM output_cursor")
    assert row == [(12, 5, 0, 0)]


def _doc(out: OutputConfig) -> dict[str, Any]:
    return {"name": out.name, "type": out.type, "url": out.url, "secret": out.secret}


def test_full_queue_drops_the_oldest_counted_and_journalled(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    add_findings(db, [hit(n) for n in range(12)])
    port = free_port()  # nothing listens: every attempt fails
    out = output(
        type="webhook", url=f"http://127.0.0.1:{port}/", secret="s", max_queue=5, retry_max=0.01
    )
    runner = deliver(out, db, build_sink(out, {"out": b"s"}), lambda r: r.stats.failed >= 3)
    assert runner.stats.dropped == 7 and runner.stats.pending == 5 and not runner.stats.up
    journal = query(db, "SELECT detail FROM journal WHERE kind = 'output-dropped'")
    assert len(journal) == 1 and "7 findings skipped" in str(journal[0][0])
    # The five newest are still there; a receiver that comes up gets exactly them.
    rx = Receiver(port=port)
    try:
        deliver(out, db, build_sink(out, {"out": b"s"}), lambda r: r.stats.delivered == 5)
        assert rx.ids() == Counter(finding_ids(db)[7:])
    finally:
        rx.close()
    assert query(db, "SELECT delivered, dropped, pending FROM output_cursor") == [(5, 7, 0)]


def test_selection_by_severity_and_category(tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "audit.db"
    hits = [hit(n, category="scanner-probe" if n % 2 else "pii-in-url") for n in range(16)]
    add_findings(db, hits)
    out = output(
        type="webhook",
        url=receiver.url,
        secret="s",
        min_severity="high",
        categories=["pii-in-url"],
        shape="native",
    )
    want = [
        f
        for f, h in zip(finding_ids(db), hits, strict=True)
        if h.severity >= Severity.HIGH and h.category == "pii-in-url"
    ]
    runner = deliver(
        out, db, build_sink(out, {"out": b"s"}), lambda r: r.stats.delivered == len(want)
    )
    wait_for(lambda: runner.stats.pending == 0)
    assert receiver.ids() == Counter(want)
    # Findings it does not take do not stay "pending": the cursor moves past them.
    top = query(db, "SELECT max(rowid) FROM findings")[0][0]
    assert query(db, "SELECT last_rowid FROM output_cursor") == [(top,)]


def test_a_new_output_starts_at_the_end_by_default(tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "audit.db"
    add_findings(db, [hit(n) for n in range(5)])
    out = output(type="webhook", url=receiver.url, secret="s", start="end")
    has_cursor = lambda r: bool(query(db, "SELECT 1 FROM output_cursor"))
    deliver(out, db, build_sink(out, {"out": b"s"}), has_cursor)
    add_findings(db, [hit(n) for n in range(5, 8)])
    deliver(out, db, build_sink(out, {"out": b"s"}), lambda r: r.stats.delivered == 3)
    assert receiver.ids() == Counter(finding_ids(db)[5:])


# -- file -----------------------------------------------------------------------------


def test_file_output_rotates_by_size_and_holds_each_finding_once(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    target = tmp_path / "out" / "findings.json"
    out = output(type="file", path=str(target), max_bytes=4000, keep=50)
    add_findings(db, [hit(n) for n in range(30)])
    deliver(out, db, build_sink(out, {}), lambda r: r.stats.delivered == 30)
    # Restarted (a new loop, a new sink) with more findings: appended, nothing repeated.
    add_findings(db, [hit(n) for n in range(30, 60)])
    deliver(out, db, build_sink(out, {}), lambda r: r.stats.delivered == 30)

    files = sorted(target.parent.iterdir())
    assert len(files) > 3, "rotated several times"
    assert {f.name for f in files} <= {
        "findings.json",
        *(f"findings.json.{i}" for i in range(1, 51)),
    }
    ids: list[str] = []
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o600
        assert f.stat().st_size <= 4000
        lines = f.read_text().splitlines()
        ids.extend(orjson.loads(line)["finding_info"]["uid"] for line in lines)  # OCSF
    assert Counter(ids) == Counter(finding_ids(db))
    assert target.parent.stat().st_mode & 0o777 == 0o700


def test_file_rotation_keeps_keep_files(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    sink = FileSink(target, max_bytes=100, keep=2)
    from auditor.outputs.sink import Item

    try:
        for n in range(10):
            sink.send([Item({"id": str(n)}, b'{"n": %d, "pad": "%s"}' % (n, b"x" * 60))])
    finally:
        sink.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["f.json", "f.json.1", "f.json.2"]
    assert orjson.loads(target.read_text())["n"] == 9
    assert orjson.loads((tmp_path / "f.json.2").read_text())["n"] == 7


# -- config ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"name": "a", "type": "file"}, "key 'output[0].path': is required"),
        ({"name": "a", "type": "kafka"}, "key 'output[0].type': must be one of"),
        ({"name": "a", "type": "file", "path": "/x", "bogus": 1}, "'output[0].bogus': unknown key"),
        (
            {"name": "a", "type": "file", "path": "/x", "url": "https://h/"},
            "only for type = 'webhook'",
        ),
        (
            {"name": "a", "type": "webhook", "url": "http://example.org/x", "secret": "s"},
            "loopback",
        ),
        ({"name": "a", "type": "webhook", "url": "ftp://h/x", "secret": "s"}, "output[0].url"),
        ({"name": "a", "type": "webhook", "url": "https://h/x"}, "exactly one of"),
        ({"name": "a", "type": "syslog", "address": "http://h"}, "output[0].address"),
        ({"name": "a", "type": "syslog", "facility": "local9"}, "output[0].facility"),
        ({"name": "a", "type": "syslog", "categories": ["nope"]}, "output[0].categories"),
        ({"name": "a", "type": "syslog", "min_severity": "urgent"}, "output[0].min_severity"),
        ({"name": "a", "type": "syslog", "shape": "cef"}, "output[0].shape"),
        ({"name": "a b", "type": "syslog"}, "output[0].name"),
        ({"name": "a", "type": "file", "path": "/x", "max_bytes": 0}, "output[0].max_bytes"),
    ],
)
def test_output_config_errors_name_file_and_key(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({"output": [doc]}, "c.toml")
    assert "c.toml" in str(exc.value) and message in str(exc.value)


def test_output_config_defaults() -> None:
    outs = parse_config(
        {
            "output": [
                {"name": "f", "type": "file", "path": "/x"},
                {"name": "s", "type": "syslog"},
                {
                    "name": "w",
                    "type": "webhook",
                    "url": "https://siem.example.org/in",
                    "secret": "k",
                },
            ]
        },
        "c.toml",
    ).outputs
    assert [o.shape for o in outs] == ["ocsf", "native", "ocsf"]
    assert str(outs[1].address) == "unix:///dev/log" and outs[1].facility == "authpriv"
    assert "s3cr3t-value" not in repr(outs[2])  # the secret never shows in a repr (or a log)
    assert parse_syslog_address("udp://[::1]").port == 514
    assert parse_syslog_address("tcp://siem.example.org").port == 601
    with pytest.raises(ConfigError, match="two outputs are named"):
        parse_config({"output": [{"name": "a", "type": "syslog"}] * 2}, "c.toml")


def test_backoff_grows_with_jitter_and_a_cap() -> None:
    import random

    rng = random.Random(1)
    delays = [backoff(n, 1.0, 60.0, rng) for n in range(1, 12)]
    assert 0.5 <= delays[0] <= 1.0 and 4.0 <= delays[3] <= 8.0
    assert all(30.0 <= d <= 60.0 for d in delays[6:])


def test_bad_secret_file_never_starts_the_daemon(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "a.db"}"\n'
        '[[output]]\nname = "hook"\ntype = "webhook"\nurl = "https://siem.example.org/x"\n'
        'secret_file = "missing.key"\n'
    )
    for cmd in (["run"], ["check-config"]):
        res = subprocess.run(
            [sys.executable, "-m", "auditor", *cmd, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert res.returncode == 2, res.stderr
        assert "output[0].secret_file" in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "a.db").exists()


# -- end to end: the daemon -----------------------------------------------------------


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def test_daemon_delivers_each_finding_once_across_sigkill_and_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("")
    (tmp_path / "hook.key").write_text(SECRET.decode() + "\n")
    rx = Receiver()
    rx.down = True
    metrics_port = free_port()
    config = write_config(
        tmp_path,
        [{"name": "api", "path": str(log)}],
        rules=True,
        daemon={"metrics_listen": f"127.0.0.1:{metrics_port}"},
    )
    with config.open("a") as f:
        f.write(
            f'[[output]]\nname = "hook"\ntype = "webhook"\nurl = "{rx.url}"\n'
            'secret_file = "hook.key"\nretry_initial = 0.05\nretry_max = 0.2\n'
            'categories = ["pii-in-url"]\nshape = "native"\n'
        )
    db = tmp_path / "audit.db"

    def pii() -> list[str]:
        return [
            str(r[0]) for r in query(db, "SELECT id FROM findings WHERE category = 'pii-in-url'")
        ]

    def stored() -> int:
        return len(pii())

    try:
        # 1. The receiver is down: findings wait in the store. SIGKILL the daemon.
        with Daemon(config) as d:
            with log.open("a") as f:
                f.write(finding_lines(range(10)))
            wait_for(lambda: stored() == 10, what="10 findings stored")
            wait_for(lambda: rx.attempts >= 3, what="failed attempts")
            assert 'log_auditor_output_up{output="hook"} 0' in _metrics(metrics_port)
            d.kill()
        assert not rx.received
        # 2. It recovers, the daemon comes back: the waiting ones arrive, then new ones;
        #    SIGTERM while findings are still going out.
        rx.down = False
        with Daemon(config) as d:
            wait_for(lambda: len(rx.received) >= 10, what="the 10 that waited")
            with log.open("a") as f:
                f.write(finding_lines(range(10, 400)))
            wait_for(lambda: len(rx.received) >= 30, what="some of the new ones")
            assert d.stop() == 0
        # 3. Started again: the rest, once.
        with Daemon(config) as d:
            wait_for(lambda: stored() == 400, what="400 findings stored")
            want = Counter(pii())
            wait_for(lambda: rx.ids() == want, what="every finding delivered")
            text = _metrics(metrics_port)
            assert 'log_auditor_output_pending{output="hook"} 0' in text
            assert 'log_auditor_output_up{output="hook"} 1' in text
            assert d.stop() == 0
        assert rx.ids() == Counter(pii())  # each exactly once
        outputs = status(config)["outputs"]
        assert isinstance(outputs, list) and len(outputs) == 1
        st = outputs[0]
        assert (st["name"], st["delivered"], st["dropped"], st["pending"]) == ("hook", 400, 0, 0)
        assert st["failed"] >= 3 and st["last_error"] is None and st["last_delivered_at"]
        rx.check_signatures(SECRET)
        for headers, body in rx.received:
            assert orjson.loads(body)["id"] == headers[FINDING_HEADER]  # native shape
        assert "Traceback" not in d.stderr
    finally:
        rx.close()


def test_sighup_adds_an_output(tmp_path: Path, receiver: Receiver) -> None:
    log = tmp_path / "access.log"
    log.write_text(finding_lines(range(3)))
    config = write_config(tmp_path, [{"name": "api", "path": str(log)}], rules=True)
    db = tmp_path / "audit.db"
    with Daemon(config) as d:
        wait_for(lambda: len(finding_ids(db)) >= 3, what="3 findings")
        with config.open("a") as f:
            f.write(
                f'[[output]]\nname = "late"\ntype = "webhook"\nurl = "{receiver.url}"\n'
                f'secret = "{SECRET.decode()}"\ncategories = ["pii-in-url"]\n'
            )
        d.signal(signal.SIGHUP)
        wait_for(lambda: query(db, "SELECT name FROM output_cursor") == [("late",)], what="reload")
        with log.open("a") as f:
            f.write(finding_lines(range(3, 6)))
        wait_for(lambda: len(receiver.received) == 3, what="the 3 new findings")
        assert d.stop() == 0
    pii = [str(r[0]) for r in query(db, "SELECT id FROM findings WHERE category = 'pii-in-url'")]
    assert len(pii) == 6
    assert receiver.ids() == Counter(pii[3:]), "start = 'end': only findings after the reload"


def _slow_first_receiver() -> tuple[ThreadingHTTPServer, list[str]]:
    """A receiver that answers the first request once another came, or after 2 s: slower
    than the wait a reload gives a delivery in flight. Also returns the finding ids got."""
    got: list[str] = []
    second = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            got.append(self.headers[FINDING_HEADER])
            if len(got) == 1:
                second.wait(2.0)
            else:
                second.set()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, got


def test_outputs_restarted_by_a_reload_wait_for_a_delivery_still_in_flight(
    tmp_path: Path,
) -> None:
    """The restarted output (a new runner on the same cursor) used to read the cursor
    before the old runner's delivery, still in its thread, moved it, and sent that
    finding a second time (and counted it twice)."""
    db = tmp_path / "audit.db"
    add_findings(db, [hit(0)])
    server, got = _slow_first_receiver()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    doc = {"name": "hook", "type": "webhook", "url": url, "secret": "s", "start": "beginning"}
    config = parse_config({"store": {"path": str(db)}, "output": [doc]}, "t.toml")

    def cursor() -> list[tuple[object, ...]]:
        return query(db, "SELECT last_rowid FROM output_cursor")

    async def scenario() -> None:
        outputs = Outputs(lambda: None)
        async with asyncio.TaskGroup() as tg:
            outputs.start(tg, config, {"hook": b"s"})
            await _until_async(lambda: bool(got), "the first request")
            # A reload: the outputs stop, the delivery outlasts the wait, they start again.
            await outputs.wait(time.monotonic() + 0.1)
            outputs.start(tg, config, {"hook": b"s"})
            await _until_async(lambda: cursor() == [(1,)], "the first delivery recorded")
            add_findings(db, [hit(1)])
            await _until_async(lambda: cursor() == [(2,)], "the next finding")
            await outputs.wait(time.monotonic() + 5)

    try:
        asyncio.run(scenario())
    finally:
        server.shutdown()
        server.server_close()
    assert got == finding_ids(db)  # each once, in order
    assert query(db, "SELECT delivered FROM output_cursor") == [(2,)]


async def _until_async(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_tcp_syslog_reconnects_after_the_receiver_hung_up(tmp_path: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)
    out = output(type="syslog", address=f"tcp://127.0.0.1:{server.getsockname()[1]}")
    sink = SyslogSink(out.address, out.facility)
    from auditor.outputs.sink import Item

    def items(first: int) -> list[Item]:
        return [
            Item({"id": f"f{n}", "severity": 2}, b'{"n": %d}' % n) for n in range(first, first + 3)
        ]

    def read_frames(conn: socket.socket, n: int) -> list[bytes]:
        buf, frames = b"", list[bytes]()
        while len(frames) < n:
            buf += conn.recv(65536)
            while b" " in buf:
                size, _, rest = buf.partition(b" ")
                if len(rest) < int(size):
                    break
                frames.append(rest[: int(size)])
                buf = rest[int(size) :]
        return frames

    try:
        sink.send(items(0))
        first, _ = server.accept()
        assert len(read_frames(first, 3)) == 3
        first.close()  # the receiver restarts
        sink.send(items(3))  # noticed before writing: a new connection
        second, _ = server.accept()
        with second:
            frames = read_frames(second, 3)
        assert [parse_5424(f)["msg"]["n"] for f in frames] == [3, 4, 5]
    finally:
        sink.close()
        server.close()


def test_deleted_newest_findings_do_not_hide_new_ones(tmp_path: Path, receiver: Receiver) -> None:
    """Retention may delete the newest findings; SQLite then reuses their rowids."""
    db = tmp_path / "audit.db"
    add_findings(db, [hit(n) for n in range(5)])
    out = output(type="webhook", url=receiver.url, secret="s")
    deliver(out, db, build_sink(out, {"out": b"s"}), lambda r: r.stats.delivered == 5)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DELETE FROM findings WHERE rowid >= 3")
    conn.close()
    add_findings(db, [hit(n) for n in range(5, 9)])  # rowids 3, 4, 5, 6 again
    deliver(out, db, build_sink(out, {"out": b"s"}), lambda r: r.stats.delivered == 4)
    assert sum(receiver.ids().values()) == 9 and set(finding_ids(db)) <= set(receiver.ids())


def test_a_hung_receiver_blocks_neither_ingest_nor_stop(tmp_path: Path) -> None:
    hole = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(hole.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    log = tmp_path / "access.log"
    log.write_text("")
    config = write_config(tmp_path, [{"name": "api", "path": str(log)}], rules=True)
    with config.open("a") as f:
        f.write(
            f'[[output]]\nname = "stuck"\ntype = "webhook"\n'
            f'url = "http://127.0.0.1:{hole.getsockname()[1]}/"\nsecret = "s"\ntimeout = 60.0\n'
            'categories = ["pii-in-url"]\n'
        )
    db = tmp_path / "audit.db"
    try:
        with Daemon(config) as d:
            with log.open("a") as f:
                f.write(finding_lines(range(3)))
            wait_for(lambda: bool(held), what="a request in flight")
            with log.open("a") as f:
                f.write(finding_lines(range(3, 200)))
            wait_for(lambda: len(finding_ids(db)) >= 200, what="ingest goes on")
            # Within the unit's TimeoutStopSec, though the receiver may take 60 s.
            assert d.stop(timeout=STOP_PROMISE) == 0
    finally:
        hole.close()
        for s in held:
            s.close()
    sent = query(db, "SELECT delivered, pending FROM output_cursor")
    assert sent and sent[0][0] == 0
