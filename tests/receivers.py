"""A webhook receiver on loopback for the output tests: records each request's headers
and body, and can fail or drop requests on demand."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from auditor.outputs.webhook import FINDING_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify


class Receiver:
    """An HTTP receiver on loopback: fails while ``failures`` last, then records requests.

    ``failures`` holds what the next requests get: ``500`` or ``"drop"`` (the connection
    is closed without a response). ``down`` makes every request fail.
    """

    def __init__(self, failures: list[int | str] | None = None, port: int = 0) -> None:
        self.failures = list(failures or [])
        self.down = False
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.attempts = 0
        self.lock = threading.Lock()
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with rx.lock:
                    rx.attempts += 1
                    fail: int | str | None = "drop" if rx.down else None
                    if fail is None and rx.failures:
                        fail = rx.failures.pop(0)
                    if fail is None:
                        rx.received.append((dict(self.headers.items()), body))
                if fail == "drop":
                    self.close_connection = True
                    return  # no response at all: the client sees the connection close
                self.send_response(200 if fail is None else int(fail))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def requests(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return list(self.received)

    def ids(self) -> Counter[str]:
        with self.lock:
            return Counter(h[FINDING_HEADER] for h, _ in self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def check_signatures(self, secret: bytes) -> None:
        for headers, body in self.received:
            assert verify(secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
            assert not verify(b"other", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
