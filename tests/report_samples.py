"""Hand-made stores for the report tests: events, hits and journal records written through
``Store.write`` the way the pipeline would, with a few hostile strings and planted secrets."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from auditor.config import SourceConfig
from auditor.model import Event, Exposure, Hit, Severity
from auditor.pipeline import Batch, Pipeline, Position
from auditor.readgap import ReadGap
from auditor.store import Store
from auditor.tail import Chunk, SourceTailer, TailItem

DAY = datetime(2026, 11, 20, tzinfo=UTC)
RAW_PAN = "4111111111111111"
RAW_EMAIL = "jane.doe@example.org"
RAW_AWS = "AKIAIOSFODNN7EXAMPLE"
RAW_JWT = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl"
PLANTED = (RAW_PAN, RAW_EMAIL, RAW_AWS, RAW_JWT)
HOSTILE = '<img src="/etc/passwd"/><font color=red>x</font>&amp;'
LONG_URL = "/v1/search?q=" + "a%2Fb" * 400


def event(ts: datetime, **kw: object) -> Event:
    base: dict[str, object] = {
        "timestamp": ts,
        "source": "api",
        "format": "combined",
        "client_ip": "198.51.100.7",
        "client_port": None,
        "method": "GET",
        "scheme": None,
        "host": None,
        "server_port": None,
        "path": "/v1/items",
        "route": "/v1/items",
        "query": None,
        "http_version": "1.1",
        "status": 200,
        "bytes_in": None,
        "bytes_out": 512,
        "duration_ms": None,
        "user_name": None,
        "user_agent": "curl/8.4",
        "referrer": None,
        "tls_version": None,
        "request_id": None,
        "forwarded_for": None,
        "file": "/var/log/nginx/access.log",
        "offset": 0,
    }
    base.update(kw)
    return Event(**base)  # type: ignore[arg-type]


def hit(ts: datetime, rule_id: str, category: str, severity: Severity, **kw: object) -> Hit:
    base: dict[str, object] = {
        "rule_id": rule_id,
        "title": rule_id.replace(".", " "),
        "category": category,
        "severity": severity,
        "key": "198.51.100.7",
        "timestamp": ts,
        "first_seen": ts,
        "count": 1,
        "source": "api",
        "client_ip": "198.51.100.7",
        "evidence": "GET /v1/items",
        "controls": (),
    }
    base.update(kw)
    return Hit(**base)  # type: ignore[arg-type]


def write(store: Store, events: list[Event], hits: tuple[Hit, ...] | list[Hit] = ()) -> None:
    """One batch, aggregated the way the pipeline does it (minutes, clients, counters)."""
    batch = Batch(events=list(events), hits=list(hits))
    for e in events:
        c = batch.counter(e.source)
        c.lines_read += 1
        c.lines_parsed += 1
    Pipeline._aggregate(batch)
    store.write(batch)


def traffic(
    day: datetime,
    source: str = "api",
    *,
    every_min: int = 1,
    skip: tuple[int, int] | None = None,
    client: str = "198.51.100.7",
    status: int = 200,
) -> list[Event]:
    """One request every ``every_min`` minutes for the day, minutes in ``skip`` left out."""
    out = []
    for m in range(0, 1440, every_min):
        if skip and skip[0] <= m < skip[1]:
            continue
        out.append(
            event(
                day + timedelta(minutes=m, seconds=5),
                source=source,
                client_ip=client,
                status=status,
            )
        )
    return out


def demo_store(path: Path) -> Store:
    """The demo day: two sources, a 90-minute gap, PII in URLs, hostile evidence, secrets."""
    store = Store.open(path)
    store.register_source("api", "/var/log/nginx/access.log", "combined")
    store.register_source("edge", "/var/log/alb/edge.log", "aws-alb")
    prev = DAY - timedelta(days=1)
    write(store, traffic(prev, every_min=2))
    write(
        store,
        [],
        [
            hit(
                prev + timedelta(hours=9),
                "auth.failed-burst",
                "failed-auth-burst",
                Severity.HIGH,
                count=14,
                controls=("PCI-DSS-4.0.1:10.2.1.4",),
            )
        ],
    )
    events = traffic(DAY, skip=(180, 270))
    events += traffic(DAY, "edge", every_min=2, client="203.0.113.9")
    burst = DAY + timedelta(hours=10)
    events += [
        event(
            burst + timedelta(seconds=i),
            client_ip="203.0.113.66",
            status=401,
            path="/v1/login",
            route="/v1/login",
            method="POST",
        )
        for i in range(40)
    ]
    pay = DAY + timedelta(hours=14)
    pan_masked = "411111******1111"
    events += [
        event(
            pay + timedelta(minutes=i),
            path="/v1/pay",
            route="/v1/pay",
            query=f"card={pan_masked}",
            exposures=(Exposure("pan", "query", "card", pan_masked, f"digest-pan-{i % 3}"),),
        )
        for i in range(9)
    ]
    events += [
        event(
            pay + timedelta(minutes=30 + i),
            path="/v1/users",
            route="/v1/users",
            query="email=j***@example.org",
            exposures=(
                Exposure("email", "query", "email", "j***@example.org", f"digest-mail-{i}"),
            ),
        )
        for i in range(5)
    ]
    events += [
        event(
            DAY + timedelta(hours=16, minutes=i),
            source="edge",
            scheme="http",
            client_ip="192.0.2.10",
        )
        for i in range(6)
    ]
    hits = [
        hit(
            burst,
            "auth.failed-burst",
            "failed-auth-burst",
            Severity.HIGH,
            key="203.0.113.66",
            client_ip="203.0.113.66",
            count=40,
            evidence="POST /v1/login -> 401 x40",
            controls=("PCI-DSS-4.0.1:10.2.1.4", "PCI-DSS-3.2.1:10.2.4", "OWASP-API-2023:API2"),
        ),
        hit(
            pay,
            "pii.pan-in-url",
            "pii-in-url",
            Severity.CRITICAL,
            key="/v1/pay|card",
            count=9,
            pii_type="pan",
            digest="digest-pan-0",
            # A raw PAN slipped into evidence: the report must mask it anyway.
            evidence=f"GET /v1/pay?card={RAW_PAN}",
            controls=("PCI-DSS-4.0.1:3.5.1", "PCI-DSS-3.2.1:3.4", "GDPR:Art.5(1)(c)"),
        ),
        hit(
            pay + timedelta(minutes=30),
            "pii.email-in-url",
            "pii-in-url",
            Severity.MEDIUM,
            key="/v1/users|email",
            count=5,
            pii_type="email",
            digest="digest-mail-0",
            evidence=f"GET /v1/users?email={RAW_EMAIL}&token={RAW_JWT}",
            controls=("GDPR:Art.5(1)(c)", "GDPR:Art.25"),
        ),
        hit(
            DAY + timedelta(hours=11),
            "probe.scanner",
            "scanner-probe",
            Severity.MEDIUM,
            key="192.0.2.200",
            client_ip="192.0.2.200",
            count=3,
            evidence=f"GET /{HOSTILE}?k={RAW_AWS} \u65e5\u672c\u8a9e \U0001f600 \x00\x1b[31m",
            controls=("OWASP-API-2023:API8", "PCI-DSS-4.0.1:6.4.2", "ISO-27001:A.8.16"),
        ),
        hit(
            DAY + timedelta(hours=12),
            "probe.injection",
            "injection-probe",
            Severity.HIGH,
            key="192.0.2.201",
            client_ip="192.0.2.201",
            count=2,
            evidence="GET " + LONG_URL,
        ),
        hit(
            DAY + timedelta(hours=16),
            "net.plain-http",
            "unencrypted-transport",
            Severity.HIGH,
            key="edge",
            client_ip=None,
            source="edge",
            count=6,
            evidence="GET http://api.example.org/v1/items",
            controls=("PCI-DSS-4.0.1:4.2.1", "OWASP-API-2023:API8"),
        ),
    ]
    write(store, events, hits)
    store.write(
        Batch(
            positions=[Position("fp-api-1", "api", "/var/log/nginx/access.log", 1, 2, 4096, 4096)]
        )
    )
    return store


def empty_store(path: Path) -> Store:
    store = Store.open(path)
    store.register_source("api", "/var/log/nginx/access.log", "combined")
    return store


def shifted(e: Event, minutes: int) -> Event:
    return replace(e, timestamp=e.timestamp + timedelta(minutes=minutes))


def read_gap(log: Path, source: str, found: datetime) -> ReadGap:
    """A real read gap: ``log`` read by a tailer, then truncated with no copy kept and
    written anew; the tailer finds the gap at ``found`` (its wall clock)."""
    items: list[TailItem] = []

    async def sink(item: TailItem) -> None:
        items.append(item)

    async def read_all(t: SourceTailer) -> None:
        while await t.check():
            pass

    log.write_text("the first line\n")
    config = SourceConfig(name=source, path=str(log), start="beginning")
    t = SourceTailer(config, sink, {}, wall_clock=found.timestamp)
    try:
        asyncio.run(read_all(t))
        os.truncate(log, 0)
        log.write_text("another first line, after the truncation\n")
        asyncio.run(read_all(t))
    finally:
        t.close()
    (gap,) = [g for c in items if isinstance(c, Chunk) for g in c.gaps]
    return gap
