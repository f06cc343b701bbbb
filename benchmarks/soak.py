"""Soak tests of `log-auditor run` on real files, with real rotations and real SIGKILLs.

``exactly-once`` (default): a writer appends numbered nginx lines (``GET /item/<n>``) at
a fixed rate while the file is rotated every ``--rotate-every`` seconds, by turns in the
kinds of ``--mix`` (default: copytruncate, copytruncate-rename, rename, rename; older
rotated files are gzipped and removed, as logrotate's delaycompress does), and the daemon
is SIGKILLed and restarted at random moments. At the end the store must hold every
number exactly once. The kinds:

* ``rename``: rename + create; the writer reopens the path (nginx's USR1);
* ``copytruncate``: copy beside it, truncate; the writer goes on (O_APPEND) at offset 0;
* ``copytruncate-rename``: copytruncate, then the emptied file is renamed away before
  anything new is written to it and a new, empty file is created at the path; the writer
  goes on in the renamed file until the next rotation (the next ``rename`` reopens). It
  writes again once the daemon holds the renamed file open (it saw it empty), or after
  ``QUIET`` seconds.

``sustained``: a writer process appends at ``--rate`` lines/s for ``--minutes``; the
daemon's RSS and the stored line count are sampled every ``--every`` seconds and printed
as a table (the memory curve), with the ingest rate per interval.

    .venv/bin/python benchmarks/soak.py                       # 200k lines, 10 kills
    .venv/bin/python benchmarks/soak.py --lines 20000 --kills 3
    .venv/bin/python benchmarks/soak.py --mix copytruncate-rename,rename
    .venv/bin/python benchmarks/soak.py sustained --rate 50000 --minutes 10
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from auditor.store.eventblocks import block_dicts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procmem import TreeMemory, tree_memory

HERE = Path(__file__).resolve().parent
TS = "20/Nov/2026:12:00:00 +0000"
LINE = '198.51.{a}.{b} - - [{ts}] "GET /item/{n} HTTP/1.1" 200 5 "-" "soak"\n'
CLIENTS = 5000  # client IPs, in turn: the per-client aggregates see many keys


def lines(start: int, stop: int) -> str:
    return "".join(
        LINE.format(a=n % CLIENTS // 250, b=n % 250, ts=TS, n=n) for n in range(start, stop)
    )


def write_config(work: Path, log: Path, *, rules: bool = True, daemon: str = "") -> Path:
    """The soak's config; ``rules=False`` runs without the bundled rulesets."""
    cfg = work / "config.toml"
    cfg.write_text(
        f'[store]\npath = "{work / "audit.db"}"\n\n'
        f'[[source]]\nname = "soak"\npath = "{log}"\nformat = "nginx-combined"\n'
        f'start = "beginning"\n\n[rules]\nbundled = {"true" if rules else "false"}\n\n'
        f"[daemon]\npoll_interval = 0.5\n{daemon}"
    )
    return cfg


def start_daemon(cfg: Path, err: Path) -> subprocess.Popen[bytes]:
    with err.open("ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "auditor", "run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=f,
            cwd=str(cfg.parent),
        )


def stored_numbers(db: Path) -> Counter[int]:
    if not db.exists():
        return Counter()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        blocks = conn.execute("SELECT id, data FROM event_blocks").fetchall()
    except sqlite3.OperationalError:
        return Counter()
    finally:
        conn.close()
    paths = (str(d["path"]) for i, data in blocks for d in block_dicts(i, data))
    return Counter(int(p.rsplit("/", 1)[1]) for p in paths if p.startswith("/item/"))


def registered(db: Path, source: str) -> bool:
    """True once a daemon has started on ``source`` (from then on nothing may be lost)."""
    if not db.exists():
        return False
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute("SELECT 1 FROM source_counters WHERE source = ?", (source,)).fetchone()
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()
    return row is not None


def wait_registered(db: Path, source: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not registered(db, source):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the daemon did not start within {timeout} s")
        time.sleep(0.05)


def aggregate_totals(db: Path) -> tuple[int, int]:
    """Requests counted in ``minute_stats`` and in the per-client hours: committed with
    the events, they must add up to the events stored, kills or not."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        minutes = conn.execute("SELECT coalesce(sum(requests), 0) FROM minute_stats")
        clients = conn.execute("SELECT coalesce(sum(requests), 0) FROM client_hours_all")
        return int(minutes.fetchone()[0]), int(clients.fetchone()[0])
    finally:
        conn.close()


def stored_count(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT coalesce(sum(n), 0) FROM event_blocks").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


ROTATIONS = ("rename", "copytruncate", "copytruncate-rename")
QUIET = 1.0  # longest wait without a write after a copytruncate-rename
# After a copytruncate-rename the file at the path is empty (the writer is in the renamed
# one): a rename follows, which makes the writer reopen, then one of a written file.
MIX = ("copytruncate", "copytruncate-rename", "rename", "rename")


def holds_open(pid: int | None, st: os.stat_result) -> bool:
    """True when process ``pid`` has the file ``st`` open (Linux /proc)."""
    if pid is None:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.path.samestat(os.stat(f"/proc/{pid}/fd/{fd}"), st):
                return True
        except OSError:
            continue
    return False


@dataclass(eq=False)
class RotatingWriter(threading.Thread):
    """Appends numbered lines at ``rate``, rotating every ``rotate_every`` seconds.

    Rotations happen between two writes of this thread, so none loses a line by
    construction (the copytruncate race of real logrotate is not what is tested here).
    They take the kinds of ``mix`` by turns.
    """

    log: Path
    total: int
    rate: float
    rotate_every: float
    mix: tuple[str, ...] = MIX
    daemon_pid: int | None = None  # the daemon running now (set by the soak)
    written: int = 0
    rotations: Counter[str] = field(default_factory=Counter)
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        f: TextIO = self.log.open("a")
        t0 = time.monotonic()
        next_rotation = t0 + self.rotate_every
        k = 0
        try:
            while self.written < self.total:
                now = time.monotonic()
                due = min(self.total, int((now - t0) * self.rate))
                if due > self.written:
                    f.write(lines(self.written, due))
                    f.flush()
                    self.written = due
                if now >= next_rotation:
                    k += 1
                    f = self._rotate(f, k)
                    next_rotation += self.rotate_every
                time.sleep(0.005)
        finally:
            f.close()
            self.done.set()

    def _rotate(self, f: TextIO, k: int) -> TextIO:
        rotated = self.log.with_name(f"{self.log.name}.{k}")
        kind = self.mix[(k - 1) % len(self.mix)]
        if kind == "rename":
            f.close()
            os.rename(self.log, rotated)
            f = self.log.open("a")
        else:
            shutil.copyfile(self.log, rotated)
            os.truncate(self.log, 0)  # O_APPEND: the writer goes on at offset 0
            if kind == "copytruncate-rename":
                # Renamed before its next line; the writer still holds it, and writes
                # again once the daemon has seen it empty (it holds it open then).
                moved = self.log.with_name(f"{self.log.name}.{k}-moved")
                os.rename(self.log, moved)
                self.log.touch()
                st, deadline = moved.stat(), time.monotonic() + QUIET
                while not holds_open(self.daemon_pid, st) and time.monotonic() < deadline:
                    time.sleep(0.01)
        self.rotations[kind] += 1
        # delaycompress: the files rotated two turns ago are compressed and removed.
        held = os.fstat(f.fileno())
        for old in (self.log.with_name(f"{self.log.name}.{k - 2}{x}") for x in ("", "-moved")):
            if k > 2 and old.exists() and not os.path.samestat(old.stat(), held):
                with old.open("rb") as src, gzip.open(f"{old}.gz", "wb", compresslevel=1) as dst:
                    shutil.copyfileobj(src, dst)
                shutil.copystat(old, f"{old}.gz")
                old.unlink()
                self.rotations["gzip"] += 1
        return f


@dataclass
class SoakResult:
    lines: int
    stored: int
    missing: list[int]
    doubled: list[int]
    kills: int
    rotations: dict[str, int]
    write_seconds: float
    catch_up_seconds: float
    exit_code: int | None
    aggregates: tuple[int, int] = (0, 0)  # requests in minute_stats, in client hours

    @property
    def ok(self) -> bool:
        return (
            not self.missing
            and not self.doubled
            and self.stored == self.lines
            and self.aggregates == (self.lines, self.lines)
        )

    def summary(self) -> str:
        return (
            f"lines={self.lines} stored={self.stored} distinct_ok={self.ok}"
            f" missing={len(self.missing)} doubled={len(self.doubled)} kills={self.kills}"
            f" minute_requests={self.aggregates[0]} client_requests={self.aggregates[1]}"
            f" rotations={self.rotations} write_rate={self.lines / self.write_seconds:,.0f}/s"
            f" catch_up={self.catch_up_seconds:.1f}s final_exit={self.exit_code}"
        )


def soak(
    work: Path,
    *,
    total: int = 200_000,
    rate: float = 20_000,
    rotate_every: float = 2.0,
    kills: int = 10,
    seed: int = 1,
    rules: bool = True,
    mix: tuple[str, ...] = MIX,
    say: Callable[[str], None] = print,
) -> SoakResult:
    """The exactly-once soak; returns what the store holds against what was written."""
    rng = random.Random(seed)
    log = work / "access.log"
    log.touch()
    cfg = write_config(work, log, rules=rules)
    db = work / "audit.db"
    err = work / "daemon.err"
    writer = RotatingWriter(log, total, rate, rotate_every, mix)
    proc = start_daemon(cfg, err)
    writer.daemon_pid = proc.pid
    wait_registered(db, "soak")
    t0 = time.monotonic()
    writer.start()
    duration = total / rate
    kill_times = sorted(rng.uniform(0.05, duration) for _ in range(kills))
    done_kills = 0
    for at in kill_times:
        wait = t0 + at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done_kills += 1
        say(f"  SIGKILL {done_kills}/{kills} at {time.monotonic() - t0:.2f}s, restarting")
        proc = start_daemon(cfg, err)
        writer.daemon_pid = proc.pid
    writer.done.wait()
    write_seconds = time.monotonic() - t0
    t1 = time.monotonic()
    last, last_change = -1, time.monotonic()
    while True:
        n = stored_count(db)
        if n >= total:
            break
        if n != last:
            last, last_change = n, time.monotonic()
        elif time.monotonic() - last_change > 30:
            say(f"  no progress for 30 s at {n} events")
            break
        time.sleep(0.2)
    catch_up = time.monotonic() - t1
    proc.send_signal(signal.SIGTERM)
    try:
        code: int | None = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = None
    seen = stored_numbers(db)
    missing = sorted(set(range(total)) - set(seen))
    doubled = sorted(n for n, c in seen.items() if c > 1)
    return SoakResult(
        total,
        sum(seen.values()),
        missing,
        doubled,
        done_kills,
        dict(writer.rotations),
        write_seconds,
        catch_up,
        code,
        aggregate_totals(db),
    )


# -- sustained ingest and memory ---------------------------------------------------------

WRITER = r"""
import sys, time
from datetime import date, timedelta
sys.path.insert(0, sys.argv[4])
from gen_lines import lines
path, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
# One day of realistic traffic (see gen_lines.py), generated once; each further round
# is the next day (a string replace), so the writer costs little CPU beside the daemon.
BLOCK = 200_000
DAY0 = "20/Nov/2026"
base = [ln + "\n" for ln in lines(BLOCK, seed=1)]
def block(k):
    if k == 0:
        return base
    day = (date(2026, 11, 20) + timedelta(days=k)).strftime("%d/%b/%Y")
    return "".join(base).replace(DAY0, day).splitlines(keepends=True)
k = 0; cur = block(0); i = 0
f = open(path, "a")
t0 = time.monotonic(); n = 0
while True:
    now = time.monotonic()
    if now - t0 >= seconds:
        break
    due = int((now - t0) * rate)
    while due > n:
        take = min(due - n, len(cur) - i)
        f.write("".join(cur[i : i + take]))
        n += take; i += take
        if i == len(cur):
            k += 1; cur = block(k); i = 0
    f.flush()
    time.sleep(0.01)
print(n)
"""


def sustained(
    work: Path,
    *,
    rate: float,
    seconds: float,
    every: float,
    rules: bool = True,
    daemon: str = "",
    say: Callable[[str], None] = print,
) -> list[tuple[float, TreeMemory, int, float]]:
    """Samples of (t, memory of the daemon and its workers, events stored, lines/s over
    the interval)."""
    log = work / "access.log"
    log.touch()
    cfg = write_config(work, log, rules=rules, daemon=daemon)
    db = work / "audit.db"
    proc = start_daemon(cfg, work / "daemon.err")
    wait_registered(db, "soak")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(log), str(rate), str(seconds), str(HERE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    t0 = time.monotonic()
    samples: list[tuple[float, TreeMemory, int, float]] = []
    last_n, last_t = 0, t0
    say(
        f"{'t (s)':>7} {'RSS main':>9} {'RSS tree':>9} {'PSS tree':>9} (MiB)"
        f" {'stored':>12} {'lines/s':>10}"
    )
    while writer.poll() is None:
        time.sleep(every)
        now = time.monotonic()
        n = stored_count(db)
        m = tree_memory(proc.pid)
        lps = (n - last_n) / (now - last_t)
        samples.append((now - t0, m, n, lps))
        say(
            f"{now - t0:7.0f} {m.main_rss / 1024:9.1f} {m.rss / 1024:9.1f} {m.pss / 1024:9.1f}"
            f"       {n:12,} {lps:10,.0f}"
        )
        last_n, last_t = n, now
    out, _ = writer.communicate()
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    say(f"written {int(out.strip()):,} lines, stored {stored_count(db):,}")
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "mode", nargs="?", default="exactly-once", choices=["exactly-once", "sustained"]
    )
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--rate", type=float, default=None, help="lines/s written")
    ap.add_argument("--rotate-every", type=float, default=2.0)
    ap.add_argument(
        "--mix",
        default=",".join(MIX),
        help=f"rotation kinds taken by turns, comma-separated, of: {', '.join(ROTATIONS)}",
    )
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--every", type=float, default=10.0, help="sample interval (sustained)")
    ap.add_argument("--keep", type=Path, default=None, help="work directory to keep")
    ap.add_argument("--no-rules", action="store_true", help="without the bundled rulesets")
    ap.add_argument(
        "--daemon",
        default="",
        help='extra [daemon] settings (sustained), e.g. "decode_worker = false"',
    )
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="log-auditor-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.mode == "sustained":
            rate = args.rate or 50_000
            print(f"sustained: {rate:,.0f} lines/s for {args.minutes} min in {work}")
            samples = sustained(
                work,
                rate=rate,
                seconds=args.minutes * 60,
                every=args.every,
                rules=not args.no_rules,
                daemon=args.daemon.replace(";", "\n") + "\n" if args.daemon else "",
            )
            steady = [s for s in samples if s[0] > args.every * 1.5 and s[3] > 0]
            if steady:
                avg = sum(s[3] for s in steady) / len(steady)
                print(f"ingest {avg:,.0f} lines/s average")
                for label, attr in (
                    ("RSS main", "main_rss"),
                    ("RSS tree", "rss"),
                    ("PSS tree", "pss"),
                ):
                    v = [getattr(s[1], attr) / 1024 for s in samples]
                    print(
                        f"{label}: min {min(v):.1f} MiB, max {max(v):.1f} MiB, last {v[-1]:.1f} MiB"
                    )
            return
        rate = args.rate or 20_000
        mix = tuple(k.strip() for k in args.mix.split(",") if k.strip())
        if not mix or any(k not in ROTATIONS for k in mix):
            ap.error(f"--mix: kinds are {', '.join(ROTATIONS)}")
        print(
            f"exactly-once soak: {args.lines:,} lines at {rate:,.0f}/s, rotation every"
            f" {args.rotate_every}s ({', '.join(mix)}), {args.kills} SIGKILLs"
            f" (seed {args.seed}) in {work}"
        )
        res = soak(
            work,
            total=args.lines,
            rate=rate,
            rotate_every=args.rotate_every,
            kills=args.kills,
            seed=args.seed,
            rules=not args.no_rules,
            mix=mix,
        )
        print(res.summary())
        if res.missing or res.doubled:
            print(f"missing (first 20): {res.missing[:20]}")
            print(f"doubled (first 20): {res.doubled[:20]}")
        sys.exit(0 if res.ok else 1)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
