"""Driving the real `log-auditor run` as a subprocess, for the end-to-end daemon tests.

Lines are nginx-combined with a number in the path (``/item/<n>``), so a test can check
that the store holds every number exactly once by reading the events table.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Self

from auditor.store.eventblocks import block_dicts

ROOT = Path(__file__).resolve().parent.parent
TS = "20/Nov/2026:12:00:00 +0000"
STARTED = "log-auditor started"  # the daemon's log line once it handles signals


def line(n: int, prefix: str = "item") -> str:
    return f'198.51.100.7 - - [{TS}] "GET /{prefix}/{n} HTTP/1.1" 200 5 "-" "soak"\n'


def _letters(n: int) -> str:
    return "".join("abcdefghij"[int(d)] for d in str(n))


def finding_lines(numbers: range) -> str:
    """Each line raises its own finding (an e-mail address in the URL of its own route)."""
    return "".join(
        f'198.51.100.7 - - [20/Nov/2026:12:00:00 +0000] "GET /f/{_letters(n)}'
        f'?email=john.doe@example.org HTTP/1.1" 200 5 "-" "curl/8"\n'
        for n in numbers
    )


def append(path: Path, numbers: Iterable[int], prefix: str = "item") -> None:
    with path.open("a") as f:
        f.write("".join(line(n, prefix) for n in numbers))


def write_config(
    tmp: Path,
    sources: list[dict[str, object]],
    *,
    daemon: dict[str, object] | None = None,
    name: str = "config.toml",
    rules: bool = False,
) -> Path:
    """A config with the store in ``tmp``; sources default to nginx-combined from 0.

    The bundled rules are off unless asked for: these tests are about moving lines.
    """
    out = [f'[store]\npath = "{tmp / "audit.db"}"\n']
    out.append(f"[rules]\nbundled = {_toml(rules)}\n")
    for s in sources:
        src = {"format": "nginx-combined", "start": "beginning", **s}
        out.append("[[source]]")
        out.extend(f"{k} = {_toml(v)}" for k, v in src.items())
        out.append("")
    d = {"poll_interval": 0.5, "batch_seconds": 0.1, **(daemon or {})}
    out.append("[daemon]")
    out.extend(f"{k} = {_toml(v)}" for k, v in d.items())
    path = tmp / name
    path.write_text("\n".join(out) + "\n")
    return path


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Daemon:
    """A `log-auditor run` subprocess; stderr goes to a file the test can read."""

    def __init__(
        self,
        config: Path,
        *,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        prefix: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        full_env = {**os.environ, **(env or {})}
        for inherited in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
            if inherited not in (env or {}):
                full_env.pop(inherited, None)
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "auditor", "run", "--config", str(config), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,  # a pipe, not a file: a file-size limit must not hit it
            env=full_env,
            cwd=str(config.parent),
        )
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self._lines.append(raw.decode(errors="replace"))

    @property
    def stderr(self) -> str:
        return "".join(self._lines)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_started(self, timeout: float = 30.0) -> None:
        """Until the daemon says it started (or has exited). Before, it may still be Python
        starting up, which a SIGTERM kills by the signal (exit -15) instead of stopping."""
        wait_for(
            lambda: STARTED in self.stderr or self.proc.poll() is not None,
            timeout,
            what="the daemon to start",
        )

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM once started, and wait; the exit code (and its stderr printed if not 0,
        which pytest shows with a failure)."""
        if self.proc.poll() is None:
            self.wait_started()
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # Fail, do not hang: ask for a dump of its threads first (SIGUSR1), then kill;
            # the stderr reader ends only when the process is gone.
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
            self.proc.kill()
            self.proc.wait(10)
            self._close()
            raise AssertionError(
                f"the daemon did not stop within {timeout} s of SIGTERM; its stderr:\n"
                + self.stderr[-20000:]
            ) from None
        self._close()
        if code != 0:
            print(f"daemon exit code {code}; its stderr:\n{self.stderr[-20000:]}")
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close()
        if exc_type is not None:  # the test failed inside the block: show the daemon's side
            print(f"daemon exit code {self.proc.returncode}; its stderr:\n{self.stderr[-20000:]}")

    def _close(self) -> None:
        self._reader.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


# Generous, because it is only how long a failure takes to show: on a loaded 2-core
# machine the daemon's start alone (interpreter, store, rules, decode worker) took several
# seconds, and each `status` poll is a CLI start of 1-3 s, so 15 s was spent before the
# awaited state came (the flaky timeouts seen under load).
WAIT_SECONDS = 60.0
# What a stop must keep to: the unit's TimeoutStopSec, after which systemd kills (a
# deadline for a failure to show, not a measurement).
STOP_PROMISE = 20.0


def wait_for(
    cond: Callable[[], bool], timeout: float = WAIT_SECONDS, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def la(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A `log-auditor` command as a user runs it (no config from the environment)."""
    return subprocess.run(
        [sys.executable, "-m", "auditor", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LOG_AUDITOR_CONFIG": ""},
    )


def query(db: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []  # schema not created yet
    finally:
        conn.close()


def numbers(db: Path, prefix: str = "item") -> Counter[int]:
    """How many times each number was stored."""
    return Counter(int(p.rsplit("/", 1)[1]) for p in _paths(db, prefix))


def count(db: Path, prefix: str = "item") -> int:
    return len(_paths(db, prefix))


def _paths(db: Path, prefix: str) -> list[str]:
    """Paths of the stored events under /prefix/ (an empty list before the schema exists)."""
    rows = query(db, "SELECT id, data FROM event_blocks", ())
    head = f"/{prefix}/"
    out: list[str] = []
    for block_id, data in rows:
        assert isinstance(block_id, int) and isinstance(data, bytes)
        out.extend(p for d in block_dicts(block_id, data) if (p := str(d["path"])).startswith(head))
    return out


def assert_exactly_once(db: Path, expected: Iterable[int], prefix: str = "item") -> None:
    seen = numbers(db, prefix)
    want = set(expected)
    missing = sorted(want - set(seen))
    doubled = sorted(n for n, c in seen.items() if c > 1)
    extra = sorted(set(seen) - want)
    assert not missing and not doubled and not extra, (
        f"missing {len(missing)} {missing[:10]}, doubled {len(doubled)} {doubled[:10]},"
        f" unexpected {extra[:10]}"
    )


def status(config: Path) -> dict[str, object]:
    """`log-auditor status --json`; empty while the store does not exist yet."""
    import orjson

    out = subprocess.run(
        [sys.executable, "-m", "auditor", "status", "--config", str(config), "--json"],
        check=False,
        capture_output=True,
        timeout=30,
    )
    if out.returncode != 0:
        return {}
    data = orjson.loads(out.stdout)
    assert isinstance(data, dict)
    return data


def source_status(config: Path, name: str) -> dict[str, object]:
    """One source's entry in `status --json` (empty when not there yet)."""
    sources = status(config).get("sources", [])
    assert isinstance(sources, list)
    for s in sources:
        if s["name"] == name:
            return dict(s)
    return {}


def without_file_access_override() -> tuple[str, ...]:
    """A command prefix under which file modes apply (root drops the DAC capabilities)."""
    if os.geteuid() != 0:
        return ()
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
