"""Latency of `log-auditor run`: a line appended to a watched file -> a stored event.

A probe appends one line at a time (``GET /lat/<seq>``) at random intervals and notes
the time; a poller reads the event blocks every 2 ms and notes when each probe line
became visible (committed). Optionally a second source carries background load. Prints
p50/p90/p99/max in milliseconds.

    .venv/bin/python benchmarks/latency.py                 # 300 probes, idle
    .venv/bin/python benchmarks/latency.py --load 20000    # with 20,000 lines/s beside
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from auditor.store.eventblocks import block_dicts

TS = "20/Nov/2026:12:00:00 +0000"
LOAD_WRITER = r"""
import sys, time
path, rate = sys.argv[1], float(sys.argv[2])
fmt = '198.51.100.{ip} - - [20/Nov/2026:12:00:00 +0000] "GET /api/items/{n} HTTP/1.1" 200 {b} "-" "load/1.0"\n'
f = open(path, "a"); t0 = time.monotonic(); n = 0
while True:
    due = int((time.monotonic() - t0) * rate)
    if due > n:
        f.write("".join(fmt.format(ip=i % 200 + 1, n=i, b=i % 5000) for i in range(n, due)))
        f.flush(); n = due
    time.sleep(0.01)
"""


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def _new_probe_paths(conn: sqlite3.Connection, after: int) -> tuple[int, list[str]]:
    """Paths of the probe events in blocks stored after block ``after``."""
    blocks = conn.execute(
        "SELECT id, data FROM event_blocks WHERE id > ? AND source = 'probe'", (after,)
    ).fetchall()
    paths = [str(d["path"]) for bid, data in blocks for d in block_dicts(bid, data)]
    return max([after, *(bid for bid, _ in blocks)]), paths


def measure(
    work: Path, *, probes: int, interval: float, load: float, rules: bool, seed: int
) -> list[float]:
    probe_log, load_log = work / "probe.log", work / "load.log"
    probe_log.touch()
    load_log.touch()
    db = work / "audit.db"
    cfg = work / "config.toml"
    cfg.write_text(
        f'[store]\npath = "{db}"\n\n'
        f'[[source]]\nname = "probe"\npath = "{probe_log}"\nformat = "nginx-combined"\n'
        'start = "beginning"\n\n'
        f'[[source]]\nname = "load"\npath = "{load_log}"\nformat = "nginx-combined"\n\n'
        f"[rules]\nbundled = {'true' if rules else 'false'}\n"
    )
    err = (work / "daemon.err").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "auditor", "run", "--config", str(cfg)],
        stderr=err,
        stdout=subprocess.DEVNULL,
    )
    loader: subprocess.Popen[bytes] | None = None
    written: dict[int, float] = {}
    seen: dict[int, float] = {}
    stop = threading.Event()

    def poll() -> None:
        last_id = 0
        conn: sqlite3.Connection | None = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
                last_id, paths = _new_probe_paths(conn, last_id)
            except sqlite3.OperationalError:
                paths = []
                if conn is not None:
                    conn.close()
                    conn = None
            now = time.monotonic()
            for path in paths:
                seen.setdefault(int(path.rsplit("/", 1)[1]), now)
            time.sleep(0.002)
        if conn is not None:
            conn.close()

    try:
        # Ready once the daemon has read a first probe line.
        with probe_log.open("a") as f:
            f.write(f'198.51.100.1 - - [{TS}] "GET /lat/-1 HTTP/1.1" 200 1 "-" "probe"\n')
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        deadline = time.monotonic() + 60
        while -1 not in seen:
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon did not start")
            time.sleep(0.05)
        if load:
            loader = subprocess.Popen([sys.executable, "-c", LOAD_WRITER, str(load_log), str(load)])
            time.sleep(2.0)
        rng = random.Random(seed)
        with probe_log.open("a") as f:
            for i in range(probes):
                f.write(f'198.51.100.1 - - [{TS}] "GET /lat/{i} HTTP/1.1" 200 1 "-" "probe"\n')
                f.flush()
                written[i] = time.monotonic()
                time.sleep(rng.uniform(0.5, 1.5) * interval)
        deadline = time.monotonic() + 30
        while len([i for i in written if i in seen]) < probes and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        if loader is not None:
            loader.terminate()
            loader.wait()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(20)
        err.close()
    missing = [i for i in written if i not in seen]
    if missing:
        raise RuntimeError(f"{len(missing)} probe lines never stored")
    return [(seen[i] - written[i]) * 1000 for i in written]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--interval", type=float, default=0.05, help="mean seconds between probes")
    ap.add_argument("--load", type=float, default=0.0, help="background lines/s")
    ap.add_argument("--no-rules", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="log-auditor-latency-"))
    try:
        lat = measure(
            work,
            probes=args.probes,
            interval=args.interval,
            load=args.load,
            rules=not args.no_rules,
            seed=args.seed,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"latency append -> stored event ({len(lat)} probes, background {args.load:,.0f}"
        f" lines/s, rules {'off' if args.no_rules else 'on'}):"
        f" p50 {percentile(lat, 50):.0f} ms, p90 {percentile(lat, 90):.0f} ms,"
        f" p99 {percentile(lat, 99):.0f} ms, max {max(lat):.0f} ms"
    )


if __name__ == "__main__":
    main()
