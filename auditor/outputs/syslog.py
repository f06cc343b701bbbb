"""Syslog output: RFC 5424 messages over a unix socket, UDP or TCP (octet counting).

::

    <PRI>1 TIMESTAMP HOSTNAME log-auditor PROCID MSGID [finding@32473 id=".." rule=".."
    severity=".." category=".." controls=".." count=".."] {"id": ..., the finding as JSON}

PRI is facility * 8 + the syslog severity of the finding (critical → crit, high → err,
medium → warning, low → notice). MSGID is the finding's category. The SD-ID uses 32473,
the private enterprise number RFC 5612 sets aside for documentation: log-auditor has
no number of its own, and a receiver matches on the name before the ``@``.

Over TCP each message is framed by octet counting (RFC 6587 3.4.1: ``LEN SP MSG``);
over a unix socket or UDP one datagram is one message. UDP gives no delivery
guarantee: a message is "delivered" once the kernel accepted it.
"""

from __future__ import annotations

import errno
import os
import select
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from auditor.model import Severity
from auditor.outputs.address import FACILITIES, SyslogAddress
from auditor.outputs.sink import DeliveryError, Item

APP_NAME = "log-auditor"
SD_ID = "finding@32473"
MAX_MESSAGE = 8192  # bytes; rsyslog's default maxMessageSize. Findings are far smaller.
TIMEOUT = 10.0

# Finding severity → RFC 5424 severity code.
SYSLOG_SEVERITY: dict[int, int] = {
    int(Severity.CRITICAL): 2,  # crit
    int(Severity.HIGH): 3,  # err
    int(Severity.MEDIUM): 4,  # warning
    int(Severity.LOW): 5,  # notice
}


def header_field(text: str | None, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit``; else ``-``."""
    if not text:
        return "-"
    clean = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return clean or "-"


def sd_escape(value: str) -> str:
    """PARAM-VALUE escaping (RFC 5424 6.3.3): ``"``, ``\\`` and ``]`` get a backslash."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def structured_data(f: Mapping[str, Any]) -> str:
    severity = f.get("severity")
    params: list[tuple[str, object]] = [
        ("id", f.get("id")),
        ("rule", f.get("rule_id")),
        ("severity", str(Severity(severity)) if isinstance(severity, int) else severity),
        ("category", f.get("category")),
        ("controls", " ".join(str(c) for c in f.get("controls") or ())),
        ("count", f.get("count")),
        ("source", f.get("source")),
        ("client_ip", f.get("client_ip")),
        ("pii_type", f.get("pii_type")),
    ]
    body = "".join(f' {k}="{sd_escape(str(v))}"' for k, v in params if v not in (None, ""))
    return f"[{SD_ID}{body}]"


def timestamp(now: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as RFC 5424 allows."""
    now = now.astimezone(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def format_message(
    item: Item, *, facility: int, hostname: str, procid: str, now: datetime
) -> bytes:
    """One RFC 5424 message; the MSG (the JSON body) is cut to fit ``MAX_MESSAGE``."""
    f = item.finding
    sev = SYSLOG_SEVERITY.get(int(f.get("severity") or 0), 5)
    head = (
        f"<{facility * 8 + sev}>1 {timestamp(now)} {header_field(hostname, 255)}"
        f" {APP_NAME} {header_field(procid, 128)} {header_field(f.get('category'), 32)}"
        f" {structured_data(f)} "
    ).encode()
    return head + item.body[: max(0, MAX_MESSAGE - len(head))]


def octet_frame(message: bytes) -> bytes:
    """RFC 6587 octet counting: ``MSG-LEN SP SYSLOG-MSG``."""
    return b"%d %s" % (len(message), message)


class SyslogSink:
    """Sends to one syslog address; reconnects on the next send after any failure."""

    batch_size = 200

    def __init__(self, address: SyslogAddress, facility: str, hostname: str | None = None) -> None:
        self.address = address
        self.facility = FACILITIES[facility]
        self.hostname = hostname or socket.gethostname()
        self._sock: socket.socket | None = None
        self._framed = address.transport == "tcp"

    def send(self, items: Sequence[Item]) -> None:
        procid = str(os.getpid())
        for i, item in enumerate(items):
            msg = format_message(
                item,
                facility=self.facility,
                hostname=self.hostname,
                procid=procid,
                now=datetime.now(UTC),
            )
            try:
                sock = self._connected()
                if self._framed:
                    sock.sendall(octet_frame(msg))
                else:
                    sock.send(msg)
            except OSError as exc:
                self.close()
                raise DeliveryError(f"syslog {self.address}: {_reason(exc)}", sent=i) from None

    def _connected(self) -> socket.socket:
        if self._sock is not None and self._framed and _peer_closed(self._sock):
            self.close()
        if self._sock is None:
            self._sock = self._connect()
        return self._sock

    def _connect(self) -> socket.socket:
        a = self.address
        if a.transport == "tcp":
            sock = socket.create_connection((a.host, a.port), timeout=TIMEOUT)
        elif a.transport == "udp":
            info = socket.getaddrinfo(a.host, a.port, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(info[0], socket.SOCK_DGRAM)
            sock.settimeout(TIMEOUT)
            sock.connect(info[4])
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.settimeout(TIMEOUT)
            try:
                sock.connect(a.path)
                self._framed = False
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EPROTOTYPE:
                    raise
                # A stream socket at the path (some syslog daemons): frame as over TCP.
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(TIMEOUT)
                sock.connect(a.path)
                self._framed = True
        return sock

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()


def _peer_closed(sock: socket.socket) -> bool:
    """A stream whose peer hung up (readable, then EOF): writing would vanish unseen."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
