"""nginx ``error_log`` lines that describe a client request, as events.

Basic-auth failures (``user "x" was not found``, ``password mismatch``, PAM) only reach the
error log, and fail2ban and CrowdSec read them there. A line that names a client and a
request becomes an event; the status is inferred from the message (401 for auth failures,
403 for ``access forbidden``, 404 for missing files, 503 for ``limit_req``), else ``None``.
Lines without a request (TLS handshake failures, worker notices) do not parse.
"""

from __future__ import annotations

import re

from auditor.formats.event import DictParser

_HEAD = re.compile(r"(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(\w+)\] \d+#\d+: (?:\*\d+ )?")
_TAIL = re.compile(r'([^,\s]+)(?:, server: [^,]*)?, request: "([^"\\]*(?:\\.[^"\\]*)*)"(.*)')
_HOST = re.compile(r', host: "([^"]*)"')
_REFERRER = re.compile(r', referrer: "([^"]*)"')
_USER = re.compile(r'user "(.*)"(?: was not found in|: password mismatch)')
_PAM = re.compile(r"PAM: user '(.*?)' - not authenticated")

_AUTH = ("was not found in", "password mismatch", "no user/password was provided", "PAM: user")
_STATUS = (
    ("access forbidden by rule", "403"),
    ("is forbidden", "403"),
    ("is not found", "404"),
    ("No such file or directory", "404"),
    ("limiting requests", "503"),
    ("limiting connections", "503"),  # limit_conn refuses with limit_conn_status (503)
    ("upstream timed out", "504"),
    ("while connecting to upstream", "502"),
)


def _classify(message: str) -> tuple[str | None, str | None]:
    """(status, user) inferred from the error message."""
    for needle in _AUTH:
        if needle in message:
            m = _USER.search(message) or _PAM.search(message)
            return "401", m.group(1) if m else None
    for needle, status in _STATUS:
        if needle in message:
            return status, None
    return None, None


class NginxErrorParser(DictParser):
    def __init__(self, name: str = "nginx-error") -> None:
        self.name = name

    def fields(self, text: str) -> dict[str, str] | None:
        head = _HEAD.match(text)
        if head is None:
            return None
        # The client is the *last* ", client: " field: an injected user name can contain
        # a fake one (fail2ban's nginx-http-auth test has exactly that).
        i = text.rfind(", client: ")
        if i < head.end():
            return None
        tail = _TAIL.match(text, i + 10)
        if tail is None:
            return None
        client, request, rest = tail.groups()
        status, user = _classify(text[head.end() : i])
        raw = {"time": head.group(1), "client_ip": client, "request": request}
        if status is not None:
            raw["status"] = status
        if user is not None:
            raw["user"] = user
        host = _HOST.search(rest)
        if host is not None:
            raw["host"] = host.group(1)
        ref = _REFERRER.search(rest)
        if ref is not None:
            raw["referrer"] = ref.group(1)
        return raw
