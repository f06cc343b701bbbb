"""A 30-day PDF report over a store of 10,000,000 events: whole-process time and peak RSS.

Builds (once, then reuses) a store the way a month of ingest would leave it: the events
table with every event, and the aggregates the pipeline writes beside it (per source and
minute, per client and hour, exposures per day), plus findings, digests, counters,
positions and journal records. Then runs `log-auditor report` for the 30 days as a child
process several times and reports the median wall time and the peak RSS. The budget is
10 s and 300 MiB; the report must not grow with the number of events.

    .venv/bin/python benchmarks/bench_report.py [--events N] [--findings N] [--runs K]
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from auditor.model import CATEGORIES
from auditor.store import Store
from auditor.store.eventblocks import BLOCK_MAX, pack_block

START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30
SOURCES = (("api", "combined"), ("edge", "aws-alb"), ("admin", "combined"))
ROUTES = ("/v1/items/{id}", "/v1/users/{id}", "/v1/orders", "/v1/login", "/v1/pay", "/v1/search")
CONTROLS = (
    ["PCI-DSS-4.0.1:3.5.1", "PCI-DSS-3.2.1:3.4", "GDPR:Art.5(1)(c)"],
    ["PCI-DSS-4.0.1:10.2.1.4", "PCI-DSS-3.2.1:10.2.4", "OWASP-API-2023:API2"],
    ["OWASP-API-2023:API8", "PCI-DSS-4.0.1:6.4.2"],
    ["OWASP-API-2023:API1"],
    ["GDPR:Art.32"],
)
PII = ("email", "pan", "iban", "phone", "api-key", "jwt")


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def build(path: Path, n_events: int, n_findings: int, with_events: bool) -> None:
    """Write the store with plain SQL (fast); the schema comes from ``Store.open``."""
    Store.open(path).close()
    rng = random.Random(20261001)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    n_clients = 50_000
    ips = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n_clients)]
    cum = list(itertools.accumulate(1 / (i + 1) ** 0.8 for i in range(n_clients)))
    minutes = DAYS * 1440
    per_minute = n_events / minutes
    m0 = _ms(START) // 60000
    insert_block = (
        "INSERT INTO event_blocks (source, first_ms, last_ms, n, data) VALUES (?,?,?,?,?)"
    )
    done = 0
    t0 = time.perf_counter()
    hour_clients: dict[str, int] = {}
    for m in range(minutes):
        want = int(per_minute * (m + 1)) - int(per_minute * m)
        minute = m0 + m
        if m % 60 == 0 and hour_clients:
            conn.executemany(
                "INSERT INTO client_hours (hour, client_ip, requests) VALUES (?,?,?)",
                [(minute // 60 - 1, ip, n) for ip, n in hour_clients.items()],
            )
            hour_clients.clear()
        stats: dict[str, list[int]] = {s: [0] * 8 for s, _ in SOURCES}
        rows = []
        for k in range(want):
            src, fmt = SOURCES[k % 3]
            ip = ips[bisect.bisect_left(cum, rng.random() * cum[-1])]
            status = 200 if rng.random() < 0.93 else rng.choice((301, 401, 403, 404, 500))
            ts = minute * 60000 + (k * 60000) // max(1, want)
            st = stats[src]
            st[0] += 1
            st[1 + min(3, status // 100 - 2)] += 1
            st[5] += status in (401, 403)
            st[6] += src == "edge" and k % 50 == 0
            st[7] += 512
            hour_clients[ip] = hour_clients.get(ip, 0) + 1
            if with_events:
                route = ROUTES[k % len(ROUTES)]
                rows.append(
                    (
                        ts,
                        src,
                        fmt,
                        ip,
                        None,
                        "GET",
                        "https" if src == "edge" else None,
                        None,
                        None,
                        route.replace("{id}", str(k)),
                        route,
                        None,
                        "1.1",
                        status,
                        None,
                        512,
                        None,
                        None,
                        "bench/1.0",
                        None,
                        None,
                        None,
                        None,
                        f"/var/log/{src}.log",
                        ts,
                        None,
                    )
                )
        for src, _fmt in SOURCES:
            mine = [r for r in rows if r[1] == src]
            for i in range(0, len(mine), BLOCK_MAX):
                conn.execute(insert_block, pack_block(src, mine[i : i + BLOCK_MAX]))
        conn.executemany(
            "INSERT INTO minute_stats VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(s, minute, *v) for s, v in stats.items() if v[0]],
        )
        done += want
        if m % 1440 == 1439:
            conn.commit()
            rate = done / (time.perf_counter() - t0)
            print(f"  day {m // 1440 + 1}/{DAYS}: {done:,} events ({rate:,.0f}/s)", flush=True)
    conn.executemany(
        "INSERT INTO client_hours (hour, client_ip, requests) VALUES (?,?,?)",
        [((m0 + minutes) // 60 - 1, ip, n) for ip, n in hour_clients.items()],
    )
    _findings(conn, rng, n_findings)
    _rest(conn, rng, n_events)
    conn.commit()
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


def _findings(conn: sqlite3.Connection, rng: random.Random, n: int) -> None:
    span = DAYS * 86_400_000
    first_ms = _ms(START)
    rows, digests = [], []
    for i in range(n):
        cat = CATEGORIES[i % len(CATEGORIES)]
        first = (
            first_ms - span // 2 + rng.randrange(span + span // 2)
        )  # some in the previous period
        pii = rng.choice(PII) if cat in ("pii-in-url", "secret-in-url") else None
        fid = f"{i:016x}"
        rows.append(
            (
                fid,
                f"bench.{cat}",
                f"Bench finding {cat}",
                cat,
                rng.randint(1, 4),
                f"key{i}",
                f"10.0.{i >> 8 & 255}.{i & 255}",
                SOURCES[i % 3][0],
                first,
                first + rng.randrange(3_600_000),
                rng.randint(1, 500),
                pii,
                "GET /v1/items/123?q=[masked]",
                orjson.dumps(CONTROLS[i % 5]).decode(),
                3600,
                first + 60_000,
            )
        )
        if pii:
            digests += [(fid, f"{rng.getrandbits(64):016x}") for _ in range(3)]
    conn.executemany(
        "INSERT INTO findings (id, rule_id, title, category, severity, key, client_ip, source,"
        " first_seen_ms, last_seen_ms, count, pii_type, evidence, controls, episode_gap_s,"
        " detected_at_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    conn.executemany("INSERT OR IGNORE INTO finding_digests VALUES (?,?)", digests)


def _rest(conn: sqlite3.Connection, rng: random.Random, n_events: int) -> None:
    exposures: list[tuple[object, ...]] = []
    for d in range(DAYS):
        day = (START + timedelta(days=d)).strftime("%Y-%m-%d")
        base = _ms(START) + d * 86_400_000
        exposures.extend(
            (
                day,
                "api",
                PII[j % len(PII)],
                "query",
                ROUTES[j % len(ROUTES)],
                f"p{j % 7}",
                f"{rng.getrandbits(64):016x}",
                rng.randint(1, 40),
                base + j,
                base + j + 1000,
            )
            for j in range(300)
        )
    conn.executemany("INSERT OR IGNORE INTO exposures VALUES (?,?,?,?,?,?,?,?,?,?)", exposures)
    for src, fmt in SOURCES:
        n = n_events // 3
        conn.execute(
            "INSERT INTO source_counters (source, path, format, lines_read, lines_parsed,"
            " lines_unparsed, bytes_read, rotations, first_event_ms, last_event_ms)"
            " VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                src,
                f"/var/log/{src}.log",
                fmt,
                n + 120,
                n,
                120,
                n * 180,
                DAYS,
                _ms(START),
                _ms(START + timedelta(days=DAYS)),
            ),
        )
        for d in range(DAYS):
            at = _ms(START + timedelta(days=d, hours=0, minutes=5))
            conn.execute(
                "INSERT INTO positions VALUES (?,?,?,?,?,?,?,?)",
                (f"{src}-{d}", src, f"/var/log/{src}.log.{d}", 1, d, 10**8, 10**8, at),
            )
            conn.execute(
                "INSERT INTO journal (at_ms, source, kind, detail) VALUES (?,?,?,?)",
                (at, src, "rotation", f"/var/log/{src}.log rotated"),
            )


def run_report(db: Path, out: Path, config: Path) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one child run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "auditor",
            "report",
            "--config",
            str(config),
            "--db",
            str(db),
            "--from",
            START.strftime("%Y-%m-%d"),
            "--to",
            (START + timedelta(days=DAYS)).strftime("%Y-%m-%d"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"report failed ({proc.returncode}): {proc.stderr.strip()}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss / 1024, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--findings", type=int, default=5_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-events-table", action="store_true", help="Aggregates only.")
    ap.add_argument("--db", type=Path, default=None, help="Store to build or reuse.")
    ap.add_argument("--bundled-rules", action="store_true", help="Load the shipped rules too.")
    ap.add_argument(
        "--client-days",
        action="store_true",
        help="Add a per-day client rollup (proposed for the store) and use it.",
    )
    args = ap.parse_args()
    tag = f"{args.events}-{args.findings}-{'agg' if args.no_events_table else 'ev'}"
    db = args.db or HERE / "out" / f"report-store-{tag}.db"
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        print(
            f"building {db} ({args.events:,} events over {DAYS} days, {args.findings:,} findings)"
        )
        t0 = time.perf_counter()
        tmp = db.with_suffix(".building")
        tmp.unlink(missing_ok=True)
        build(tmp, args.events, args.findings, not args.no_events_table)
        tmp.rename(db)
        print(f"built in {time.perf_counter() - t0:.0f} s, {db.stat().st_size / 2**20:,.0f} MiB")
    with sqlite3.connect(db) as conn:
        has_days = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'client_days'").fetchone()
        if args.client_days and not has_days:
            print("adding client_days (what ingest would keep beside client_hours)")
            conn.execute(
                "CREATE TABLE client_days (day INTEGER NOT NULL, client_ip TEXT NOT NULL,"
                " requests INTEGER NOT NULL, PRIMARY KEY (day, client_ip)) WITHOUT ROWID"
            )
            conn.execute(
                "INSERT INTO client_days SELECT hour / 24, client_ip, sum(requests)"
                " FROM client_hours GROUP BY 1, 2"
            )
        elif not args.client_days and has_days:
            conn.execute("DROP TABLE client_days")
        if (
            args.client_days
            and conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
        ):
            # Every day is in client_days, as ingest has it once the days are over.
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value)"
                " SELECT 'client_days_through', max(day) FROM client_days HAVING count(*) > 0"
            )
        n = conn.execute("SELECT coalesce(sum(n), 0) FROM event_blocks").fetchone()[0]
        agg = conn.execute("SELECT sum(requests) FROM minute_stats").fetchone()[0]
    print(f"store: {n:,} events (in blocks), {agg:,} requests in minute_stats")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        config = tmp / "config.toml"
        config.write_text(f"[rules]\nbundled = {'true' if args.bundled_rules else 'false'}\n")
        walls, cpus, rss = [], [], 0.0
        for i in range(args.runs):
            wall, cpu, rss, stdout = run_report(db, tmp / f"r{i}.pdf", config)
            walls.append(wall)
            cpus.append(cpu)
            print(
                f"  run {i + 1}: {wall:.2f} s wall, {cpu:.2f} s CPU; {stdout.splitlines()[1].strip()}"
            )
        pdf = tmp / "r0.pdf"
        size = pdf.stat().st_size
    med = statistics.median(walls)
    load = os.getloadavg()[0]
    ok = med <= 10 and rss <= 300
    print(
        f"30-day report over {agg:,} events: median {med:.2f} s wall "
        f"({statistics.median(cpus):.2f} s CPU, load {load:.1f}), peak RSS {rss:.0f} MiB, "
        f"PDF {size / 1024:.0f} KiB -> {'within' if ok else 'OVER'} budget (10 s, 300 MiB)"
    )


if __name__ == "__main__":
    main()
