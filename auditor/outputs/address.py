"""Where outputs send to: syslog addresses and webhook URLs, parsed and checked (pure).

Each parser raises ``ValueError`` with a message that completes "key '...': <message>",
so the config reader can name the file and the key.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_SYSLOG_ADDRESS = "unix:///dev/log"
_DEFAULT_PORTS = {"udp": 514, "tcp": 601}

# RFC 5424 section 6.2.1, table 1: facility codes by the names syslog.conf uses.
FACILITIES: dict[str, int] = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    "ntp": 12,
    "audit": 13,
    "alert": 14,
    "clock": 15,
    **{f"local{i}": 16 + i for i in range(8)},
}


@dataclass(frozen=True, slots=True)
class SyslogAddress:
    transport: str  # "udp" | "tcp" | "unix"
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.transport == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def parse_syslog_address(text: str) -> SyslogAddress:
    """``udp://host:514``, ``tcp://host:601``, ``unix:///dev/log`` (ports default as shown)."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("udp", "tcp", "unix"):
        raise ValueError(f"expected udp://HOST:PORT, tcp://HOST:PORT or unix:///PATH, got {text!r}")
    if scheme == "unix":
        if not rest.startswith("/"):
            raise ValueError(f"expected an absolute socket path (unix:///dev/log), got {text!r}")
        return SyslogAddress("unix", path=rest)
    parts = urlsplit(f"//{rest}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {text!r}") from None
    host = parts.hostname or ""
    if not host or parts.path or parts.query or parts.username:
        raise ValueError(f"expected {scheme}://HOST:PORT, got {text!r}")
    return SyslogAddress(scheme, host=host, port=port or _DEFAULT_PORTS[scheme])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_webhook_url(url: str) -> str:
    """An ``https://`` URL, or ``http://`` to a loopback host only (a local relay)."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    # The URL is not echoed: its query may hold a token.
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an https://HOST/PATH URL")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL are not allowed; the body is signed instead")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(
            f"plain http is only allowed to a loopback host (127.0.0.1, ::1, localhost),"
            f" got {parts.hostname!r}; use https://"
        )
    return url
