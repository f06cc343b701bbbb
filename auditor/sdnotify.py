"""systemd integration without a dependency: sd_notify datagrams and journald log lines.

``Type=notify`` units pass ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract
socket); a message is one datagram of ``KEY=value`` lines (``READY=1``, ``WATCHDOG=1``,
``STATUS=...``, ``STOPPING=1``, ``RELOADING=1``). ``WATCHDOG_USEC`` asks for a ping at
least that often; we ping at half of it, and only while the pipeline is healthy, so a
hung daemon is restarted.

On stderr, when it is the journal (``$JOURNAL_STREAM`` matches stderr), each message is
one line with a ``<N>`` syslog priority prefix that journald turns into the entry's
level; otherwise a plain ``LEVEL name: message`` line.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Mapping
from typing import TextIO

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages; every method is a no-op outside systemd."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send one datagram (``"READY=1"``, ``"STATUS=..."``); False when not sent."""
        if self.address is None:
            return False
        addr = self.address
        if addr.startswith("@"):
            addr = "\0" + addr[1:]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), addr)
        except OSError as exc:
            log.debug("sd_notify to %s failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings (half of ``WATCHDOG_USEC``), or None when off."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2_000_000


# -- journald-friendly stderr --------------------------------------------------------------

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def _one_line(text: str) -> str:
    return " | ".join(part for part in text.splitlines() if part.strip()) if "\n" in text else text


def priority(levelno: int) -> int:
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


class JournalFormatter(logging.Formatter):
    """One line per message; a ``<N>`` priority prefix when writing to the journal."""

    def __init__(self, journal: bool) -> None:
        super().__init__(
            "%(name)s: %(message)s" if journal else "%(levelname)s %(name)s: %(message)s"
        )
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = _one_line(super().format(record))
        if self.journal:
            return f"<{priority(record.levelno)}>{text}"
        return text


def stderr_is_journal(env: Mapping[str, str] | None = None, stream: TextIO | None = None) -> bool:
    """True when ``$JOURNAL_STREAM`` names the device and inode of our stderr."""
    env = os.environ if env is None else env
    value = env.get("JOURNAL_STREAM", "")
    dev_s, _, ino_s = value.partition(":")
    if not (dev_s.isdigit() and ino_s.isdigit()):
        return False
    stream = sys.stderr if stream is None else stream
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return st.st_dev == int(dev_s) and st.st_ino == int(ino_s)


def setup_logging(level: int) -> None:
    """Route the root logger to stderr, one line per message, journald-aware."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter(stderr_is_journal()))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    # watchfiles logs every change set at INFO: far too chatty for a daemon's journal.
    logging.getLogger("watchfiles").setLevel(max(level, logging.WARNING))
