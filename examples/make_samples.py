"""Writes the bundled sample logs in examples/logs/ (deterministic; re-run to refresh).

One day (2026-11-20, UTC) of an API behind nginx, with a few incidents planted:
- a card number, an e-mail and a password in query strings (PII / secrets in URLs),
- a scanner probing /.env, /.git/config and admin pages,
- SQL injection and path traversal probes, one answered 200,
- a password brute force on /api/v1/login (401 bursts), then a lockout that never comes,
- a client walking /api/v1/invoices/{id} sequentially (enumeration),
- a plain-HTTP listener (the http source) serving a login form without redirect.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent / "logs"
DAY = datetime(2026, 11, 20, tzinfo=UTC)
UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "okhttp/4.12.0",
    "ShopApp/3.4.1 (iOS 18.1)",
]
ROUTES = [
    ("GET", "/api/v1/products?page={p}&limit=20", 200),
    ("GET", "/api/v1/products/{n}", 200),
    ("GET", "/api/v1/cart", 200),
    ("POST", "/api/v1/cart/items", 201),
    ("GET", "/api/v1/users/me", 200),
    ("GET", "/static/js/app.{h}.js", 200),
    ("GET", "/api/v1/orders?status=open", 200),
    ("GET", "/health", 200),
]


def clf(t: datetime) -> str:
    return t.strftime("%d/%b/%Y:%H:%M:%S +0000")


def line(
    ip: str,
    t: datetime,
    method: str,
    target: str,
    status: int,
    size: int,
    ua: str,
    user: str = "-",
    ref: str = "https://shop.example.com/",
) -> str:
    return f'{ip} - {user} [{clf(t)}] "{method} {target} HTTP/1.1" {status} {size} "{ref}" "{ua}"'


def normal(rnd: random.Random, t: datetime) -> str:
    ip = f"198.51.100.{rnd.randrange(1, 60)}"
    method, tmpl, status = rnd.choice(ROUTES)
    target = tmpl.format(p=rnd.randrange(1, 9), n=rnd.randrange(100, 999), h="9f3c2a")
    if rnd.random() < 0.03:
        status = 404
    return line(ip, t, method, target, status, rnd.randrange(300, 6000), rnd.choice(UAS))


def main() -> None:
    rnd = random.Random(20261120)
    OUT.mkdir(exist_ok=True)
    rows: list[tuple[datetime, str]] = []
    t = DAY
    while t < DAY + timedelta(days=1):
        t += timedelta(seconds=rnd.randrange(20, 60))
        rows.append((t, normal(rnd, t)))
    ua = UAS[0]
    # PII and secrets in URLs.
    t0 = DAY + timedelta(hours=9, minutes=14)
    rows.append(
        (
            t0,
            line(
                "198.51.100.23",
                t0,
                "GET",
                "/api/v1/checkout/confirm?card=4111-1111-1111-1111&cvv=123",
                200,
                812,
                ua,
            ),
        )
    )
    rows.append(
        (
            t0 + timedelta(minutes=3),
            line(
                "198.51.100.23",
                t0 + timedelta(minutes=3),
                "GET",
                "/api/v1/users/search?email=jane.doe%40example.org",
                200,
                431,
                ua,
            ),
        )
    )
    rows.append(
        (
            t0 + timedelta(minutes=9),
            line(
                "198.51.100.41",
                t0 + timedelta(minutes=9),
                "GET",
                "/api/v1/session?user=bob&password=Winter2026!",
                302,
                0,
                ua,
            ),
        )
    )
    # Scanner.
    t1 = DAY + timedelta(hours=2, minutes=7)
    scan_ua = "Mozilla/5.0 zgrab/0.x"
    for i, p in enumerate(
        [
            "/.env",
            "/.git/config",
            "/wp-login.php",
            "/admin/",
            "/phpinfo.php",
            "/.aws/credentials",
            "/server-status",
            "/backup.sql",
            "/config.php.bak",
            "/actuator/env",
            "/.htpasswd",
            "/wp-admin/setup-config.php",
        ]
    ):
        tt = t1 + timedelta(seconds=i)
        rows.append((tt, line("203.0.113.77", tt, "GET", p, 404, 153, scan_ua, ref="-")))
    # Injection probes (one answered 200).
    t2 = DAY + timedelta(hours=13, minutes=41)
    for i, p in enumerate(
        [
            "/api/v1/products?id=1%20UNION%20SELECT%20username,password%20FROM%20users--",
            "/api/v1/products?id=1'%20OR%20'1'='1",
            "/api/v1/files?name=../../../../etc/passwd",
            "/api/v1/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
        ]
    ):
        tt = t2 + timedelta(seconds=2 * i)
        rows.append(
            (
                tt,
                line(
                    "192.0.2.150",
                    tt,
                    "GET",
                    p,
                    200 if i == 0 else 400,
                    220,
                    "sqlmap/1.8.4#stable (https://sqlmap.org)",
                    ref="-",
                ),
            )
        )
    # Brute force on the login route, then no lockout.
    t3 = DAY + timedelta(hours=18, minutes=2)
    for i in range(40):
        tt = t3 + timedelta(seconds=3 * i)
        rows.append(
            (
                tt,
                line(
                    "192.0.2.66",
                    tt,
                    "POST",
                    "/api/v1/login",
                    401,
                    64,
                    "python-requests/2.32.3",
                    user="alice",
                    ref="-",
                ),
            )
        )
    # Enumeration: one client walks invoice ids.
    t4 = DAY + timedelta(hours=21, minutes=30)
    for i in range(80):
        tt = t4 + timedelta(seconds=i * 2)
        rows.append(
            (
                tt,
                line(
                    "198.51.100.9",
                    tt,
                    "GET",
                    f"/api/v1/invoices/{10400 + i}",
                    200 if i % 5 else 403,
                    900,
                    "okhttp/4.12.0",
                ),
            )
        )
    rows.sort(key=lambda r: r[0])
    (OUT / "api-access.log").write_text("\n".join(r for _, r in rows) + "\n")

    # A plain-HTTP listener (its own vhost log): a login served without redirect.
    http_rows = []
    t = DAY + timedelta(hours=8)
    for i in range(30):
        t += timedelta(minutes=rnd.randrange(5, 40))
        status = 301 if i % 3 else 200
        target = "/" if status == 301 else "/account/login"
        http_rows.append(
            line(
                f"198.51.100.{rnd.randrange(1, 60)}",
                t,
                "GET",
                target,
                status,
                178,
                rnd.choice(UAS),
                ref="-",
            )
        )
    (OUT / "legacy-http.log").write_text("\n".join(http_rows) + "\n")


if __name__ == "__main__":
    main()
