"""Webhook output: one HTTPS POST per finding, signed with HMAC-SHA256.

Headers of every request::

    Content-Type: application/json
    X-Log-Auditor-Timestamp: 1764716400            (Unix seconds, when signed)
    X-Log-Auditor-Signature: sha256=<hex>          HMAC-SHA256(secret, "<timestamp>.<body>")
    X-Log-Auditor-Finding-Id: 3f2a9c0e1b7d4a55     (the finding's stable id: deduplicate on it)

A receiver recomputes the HMAC over the timestamp, a dot and the raw body, compares in
constant time, and refuses timestamps older than a few minutes (replays). Any 2xx is a
delivery; anything else (another status, a timeout, a dropped connection) is a failure,
retried with backoff. Redirects are not followed: the signed body goes where it was
configured to go, or nowhere.

Extra headers for the receiver's own checks (Splunk HEC ``Authorization: Splunk <token>``,
``Authorization: Bearer <token>``, a tenant header) go on every request too: from the
output's ``headers`` table (not secret) and its ``headers_file`` (secret: read at start
and on reload by ``outputs.build.load_secrets``, never logged). They cannot replace the
headers above, ``Host``, ``Content-Length`` or the framing ones
(``auditor.outputs.headers.RESERVED``); they may replace ``User-Agent``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import auditor
from auditor.outputs.address import is_loopback
from auditor.outputs.headers import Headers
from auditor.outputs.sink import DeliveryError, Item

SIGNATURE_HEADER = "X-Log-Auditor-Signature"
TIMESTAMP_HEADER = "X-Log-Auditor-Timestamp"
FINDING_HEADER = "X-Log-Auditor-Finding-Id"
_MAX_RESPONSE = 64 << 10


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``timestamp + "." + body``."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: bytes, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does (used by the tests; documented for receivers)."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def signed_headers(secret: bytes, body: bytes, finding_id: str, now: float) -> dict[str, str]:
    ts = str(int(now))
    return {
        "Content-Type": "application/json",
        "User-Agent": f"log-auditor/{auditor.__version__}",
        TIMESTAMP_HEADER: ts,
        SIGNATURE_HEADER: signature(secret, ts, body),
        FINDING_HEADER: finding_id,
    }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the 3xx then surfaces as an HTTPError: a failed delivery


class WebhookSink:
    """POSTs each finding on its own, so a failure never leaves a batch half-known."""

    batch_size = 1

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        timeout: float,
        ca_file: Path | None = None,
        headers: Headers = (),
    ) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self._extra = dict(headers)  # checked by the config reader: no reserved name, no CR/LF
        host = urlsplit(url).hostname or ""
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if is_loopback(host):
            handlers.append(urllib.request.ProxyHandler({}))  # never via a proxy
        if ca_file is not None:
            context = ssl.create_default_context(cafile=str(ca_file))
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)
        # Messages name the host only: the path or query may carry a token.
        self._where = f"webhook {host}"

    def send(self, items: Sequence[Item]) -> None:
        for i, item in enumerate(items):
            try:
                self._post(item)
            except DeliveryError as exc:
                raise DeliveryError(str(exc), sent=i) from None

    def _post(self, item: Item) -> None:
        headers = signed_headers(self.secret, item.body, str(item.finding["id"]), time.time())
        headers.update(self._extra)
        req = urllib.request.Request(self.url, data=item.body, headers=headers, method="POST")
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                resp.read(_MAX_RESPONSE)
                status = resp.status
        except urllib.error.HTTPError as exc:
            exc.close()
            raise DeliveryError(f"{self._where}: HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            text = reason.strerror if isinstance(reason, OSError) else str(reason)
            raise DeliveryError(f"{self._where}: {text or type(reason).__name__}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise DeliveryError(f"{self._where}: {type(exc).__name__}: {exc}") from None
        if not 200 <= status < 300:
            raise DeliveryError(f"{self._where}: HTTP {status}")

    def close(self) -> None:
        pass
