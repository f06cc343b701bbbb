"""Self-monitoring: counters kept by the daemon, served as Prometheus text on loopback.

Off by default; ``[daemon] metrics_listen = "127.0.0.1:9464"`` turns it on. Only a
loopback address is accepted: the endpoint names sources and paths, so it is not for the
network. Counters start at zero with each process (Prometheus handles resets); the
lasting totals are in the store (``log-auditor status``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from auditor.errors import ConfigError
from auditor.pipeline import Batch

log = logging.getLogger(__name__)

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_MAX_REQUEST = 8192


@dataclass
class SourceMetrics:
    lines_read: int = 0
    lines_parsed: int = 0
    lines_unparsed: int = 0
    lines_truncated: int = 0
    bytes_read: int = 0
    rotations: int = 0
    last_event_ms: int | None = None


@dataclass(frozen=True, slots=True)
class SourceLive:
    """What the tailer knows now about a source (not in any batch)."""

    lag_bytes: int
    open_files: int
    gaps: int
    error: str | None


class Metrics:
    """Committed counters per source, plus writer timings. Updated by the writer only."""

    def __init__(self) -> None:
        self.sources: dict[str, SourceMetrics] = {}
        self.batches = 0
        self.commit_failures = 0
        self.commit_sum = 0.0
        self.commit_buckets = [0] * len(BUCKETS)
        self.last_commit_at: float | None = None  # wall clock
        self.started_at = time.time()

    def source(self, name: str) -> SourceMetrics:
        m = self.sources.get(name)
        if m is None:
            m = self.sources[name] = SourceMetrics()
        return m

    def record_batch(self, batch: Batch, seconds: float) -> None:
        for name, c in batch.counters.items():
            m = self.source(name)
            m.lines_read += c.lines_read
            m.lines_parsed += c.lines_parsed
            m.lines_unparsed += c.lines_unparsed
            m.lines_truncated += c.lines_truncated
            m.bytes_read += c.bytes_read
            m.rotations += c.rotations
            if c.last_event_ms is not None:
                m.last_event_ms = max(m.last_event_ms or 0, c.last_event_ms)
        self.batches += 1
        self.commit_sum += seconds
        for i, le in enumerate(BUCKETS):
            if seconds <= le:
                self.commit_buckets[i] += 1
        self.last_commit_at = time.time()

    def lines_read(self) -> int:
        return sum(m.lines_read for m in self.sources.values())

    def render(self, live: Mapping[str, SourceLive], queue_lines: int, queue_bytes: int) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        out: list[str] = []

        def family(name: str, kind: str, help_: str) -> None:
            out.append(f"# HELP log_auditor_{name} {help_}")
            out.append(f"# TYPE log_auditor_{name} {kind}")

        names = sorted(set(self.sources) | set(live))
        per_source: tuple[tuple[str, str, str], ...] = (
            ("lines_read_total", "lines_read", "Lines read and committed."),
            ("lines_parsed_total", "lines_parsed", "Lines parsed into events."),
            ("lines_unparsed_total", "lines_unparsed", "Lines not in the expected format."),
            ("lines_truncated_total", "lines_truncated", "Lines cut at max_line_bytes."),
            ("bytes_read_total", "bytes_read", "Bytes of lines committed."),
            ("rotations_total", "rotations", "Rotations seen (rename, truncate, swap)."),
        )
        for metric, attr, help_ in per_source:
            family(metric, "counter", help_)
            out.extend(_sample(metric, n, getattr(self.source(n), attr)) for n in names)
        family("last_event_timestamp_seconds", "gauge", "Log time of the newest event stored.")
        out.extend(
            _sample("last_event_timestamp_seconds", n, f"{ms / 1000:.3f}")
            for n in names
            if (ms := self.source(n).last_event_ms) is not None
        )
        gauges: tuple[tuple[str, str, str, Callable[[SourceLive], object]], ...] = (
            ("lag_bytes", "gauge", "Bytes in the source's files not read yet.", _lag),
            ("open_files", "gauge", "Files of the source held open.", _open_files),
            (
                "gaps_total",
                "counter",
                "Truncations, and unfinished compressed files, whose unread part was not found.",
                _gaps,
            ),
            ("source_up", "gauge", "1 when the source reads without error.", _up),
        )
        for metric, kind, help_, get in gauges:
            family(metric, kind, help_)
            out.extend(_sample(metric, n, get(live[n])) for n in names if n in live)
        family("queue_lines", "gauge", "Lines read and waiting for the writer.")
        out.append(f"log_auditor_queue_lines {queue_lines}")
        family("queue_bytes", "gauge", "Bytes read and waiting for the writer.")
        out.append(f"log_auditor_queue_bytes {queue_bytes}")
        family("batch_commit_seconds", "histogram", "Time to process and commit one batch.")
        for le, count in zip(BUCKETS, self.commit_buckets, strict=True):
            out.append(f'log_auditor_batch_commit_seconds_bucket{{le="{le}"}} {count}')
        out.append(f'log_auditor_batch_commit_seconds_bucket{{le="+Inf"}} {self.batches}')
        out.append(f"log_auditor_batch_commit_seconds_sum {self.commit_sum:.6f}")
        out.append(f"log_auditor_batch_commit_seconds_count {self.batches}")
        family("commit_failures_total", "counter", "Store writes that failed (and were retried).")
        out.append(f"log_auditor_commit_failures_total {self.commit_failures}")
        family("start_time_seconds", "gauge", "When this daemon process started.")
        out.append(f"log_auditor_start_time_seconds {self.started_at:.3f}")
        return "\n".join(out) + "\n"


def _lag(s: SourceLive) -> object:
    return s.lag_bytes


def _open_files(s: SourceLive) -> object:
    return s.open_files


def _gaps(s: SourceLive) -> object:
    return s.gaps


def _up(s: SourceLive) -> object:
    return 0 if s.error else 1


def _sample(metric: str, source: str, value: object) -> str:
    return f"log_auditor_{metric}{{source={_label(source)}}} {value}"


def _label(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def parse_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` / ``"[::1]:9464"`` / ``"localhost:9464"``; loopback only."""
    host, _, port_s = listen.rpartition(":")
    host = host.strip("[]")
    where = "key 'daemon.metrics_listen'"
    if not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ConfigError(f"{where}: expected HOST:PORT, got {listen!r}")
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConfigError(
                f"{where}: {host!r} is not a loopback address; the metrics endpoint"
                " only listens on 127.0.0.1, ::1 or localhost"
            )
    return host, int(port_s)


async def serve(listen: str, render: Callable[[], str]) -> asyncio.Server:
    """Serve ``GET /metrics`` (any path works) until the server is closed."""
    host, port = parse_listen(listen)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can drop a cancel
            # (CPython gh-86296).
            async with asyncio.timeout(5.0):
                head = await reader.readuntil(b"\r\n\r\n")
            request = head.split(b"\r\n", 1)[0].decode("latin-1")
            method = request.split(" ", 1)[0]
            if method not in ("GET", "HEAD"):
                status, body = "405 Method Not Allowed", b"only GET\n"
            else:
                status, body = "200 OK", render().encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            )
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port, limit=_MAX_REQUEST)
    log.info("metrics on http://%s:%d/metrics", host, port)
    return server
