"""Deterministic nginx-combined traffic for benchmarks and the bundled samples.

About 175 bytes a line; roughly 1 line in 200 carries PII or a secret in its URL, and a few
clients misbehave (probing, brute force) so detection has work to do.

Clients follow a Zipf-like law (weight 1/rank) over 260,096 addresses, as real API traffic
does: a few busy clients and a long tail (about 60,000 distinct clients a day at 1M
requests). ``uniform=True`` draws every request from a fresh random address instead, the
worst case for per-client state (a botnet).
"""

from __future__ import annotations

import bisect
import itertools
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

ROUTES = [
    "/api/v1/users/{n}",
    "/api/v1/orders/{n}",
    "/api/v1/products?page={p}&limit=50",
    "/api/v1/cart",
    "/static/app.{n}.js",
    "/api/v1/search?q=shoes&sort=price",
    "/health",
    "/api/v1/users/{n}/orders?status=open",
]
PII = [
    "/api/v1/checkout?card=4111111111111111&exp=12/27",
    "/api/v1/users/lookup?email=jane.doe@example.org",
    "/api/v1/login?user=bob&password=hunter2hunter2",
    "/api/v1/export?api_key=ak_live_9f8a7b6c5d4e3f2a1b0c",
    "/api/v1/pay?iban=DE89370400440532013000",
]
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "okhttp/4.12.0",
    "python-requests/2.31.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
]


N_CLIENTS = 4 * 256 * 254


def _address(k: int) -> str:
    return f"10.{k // (256 * 254)}.{k // 254 % 256}.{k % 254 + 1}"


class Request(NamedTuple):
    """One request of the stream, before any log format renders it."""

    n: int  # its place in the stream
    t: datetime
    ip: str
    target: str  # path and query
    status: int
    size: int
    agent: str


def requests(
    n: int, *, seed: int = 7, start: datetime | None = None, uniform: bool = False
) -> Iterator[Request]:
    """The traffic of ``lines``, request by request (``benchmarks/bench_formats.py``
    renders the same stream in every format)."""
    rnd = random.Random(seed)
    order = list(range(N_CLIENTS))
    rnd.shuffle(order)  # rank -> address, so busy clients are spread over the space
    cum = list(itertools.accumulate(1 / (r + 1) for r in range(N_CLIENTS)))
    t = start or datetime(2026, 11, 20, 0, 0, 0, tzinfo=UTC)
    step = timedelta(milliseconds=max(1, 86_400_000 // max(n, 1)))
    for i in range(n):
        t += step
        if uniform:
            ip = _address(rnd.randrange(N_CLIENTS))
        else:
            ip = _address(order[bisect.bisect_left(cum, rnd.random() * cum[-1])])
        r = rnd.random()
        if r < 0.005:
            path, status = rnd.choice(PII), 200
        elif r < 0.007:
            path, status = rnd.choice(["/.env", "/.git/config", "/wp-login.php"]), 404
        else:
            path = rnd.choice(ROUTES).format(n=rnd.randrange(1, 100000), p=rnd.randrange(1, 20))
            status = rnd.choice((200, 200, 200, 200, 201, 204, 304, 404))
        ua = rnd.choice(AGENTS)
        yield Request(i, t, ip, path, status, rnd.randrange(200, 9000), ua)


def lines(
    n: int, *, seed: int = 7, start: datetime | None = None, uniform: bool = False
) -> Iterator[str]:
    for q in requests(n, seed=seed, start=start, uniform=uniform):
        ts = q.t.strftime("%d/%b/%Y:%H:%M:%S +0000")
        yield (
            f'{q.ip} - - [{ts}] "GET {q.target} HTTP/1.1" {q.status} {q.size} '
            f'"https://shop.example.com/" "{q.agent}"'
        )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    out = sys.stdout
    buf: list[str] = []
    for line in lines(n):
        buf.append(line)
        if len(buf) >= 10000:
            out.write("\n".join(buf) + "\n")
            buf.clear()
    if buf:
        out.write("\n".join(buf) + "\n")


if __name__ == "__main__":
    main()
