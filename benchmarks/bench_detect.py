"""Detection alone: ``Detector.observe`` over pre-decoded events, every bundled rule on.

    .venv/bin/python benchmarks/bench_detect.py [--events 200000] [--repeat 3] [--batch 5000]
        [--profile] [--hits FILE]

Events come from ``benchmarks/gen_lines.py`` (one client in ~200 requests leaks PII, a few
probe or brute force), decoded and redacted once before timing, so only detection is
measured, through ``Detector.observe_many`` in batches of ``--batch`` events (0: one
``observe`` call per event). Also reports the snapshot cost (taken every 5000 events) and
the time for one request with a hostile 1 MB URL. ``--hits FILE`` records the hits, or
checks that they are the same as recorded (run it before and after a change).

To compare with an older tree (``git archive <rev> | tar -x -C /tmp/old``), run this file
from there with ``PYTHONPATH=/tmp/old`` (else the editable install imports this tree) and
``--batch 0`` if that tree has no ``observe_many``. On a shared machine trust the CPU
figures, alternate the two runs and keep the best of each.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from gen_lines import lines as gen_lines

from auditor.detect import Detector
from auditor.formats import FormatSpec, build_decoder
from auditor.model import Event, Hit, Line
from auditor.redact import Redactor
from auditor.rules import bundled_rules_dir, load_rulesets


def events(n: int) -> list[Event]:
    decode = build_decoder(FormatSpec("nginx-combined"), Redactor(b"k" * 32), "bench")
    out = []
    for i, text in enumerate(gen_lines(n)):
        ev = decode(Line("bench", "bench.log", i, i + 1, text))
        if ev is not None:
            out.append(ev)
    return out


def run(evs: list[Event], batch: int) -> tuple[float, float, list[Hit], list[float], int]:
    """Detection over ``evs`` in batches of ``batch`` events (0: ``observe`` per event),
    a snapshot after every 5000 events; (seconds and CPU seconds without snapshots, hits,
    snapshot times, last snapshot size). CPU time is the figure to trust on a busy machine."""
    ruleset = load_rulesets([bundled_rules_dir()], {})
    det = Detector(ruleset)
    hits: list[Hit] = []
    snaps: list[float] = []
    size = 0
    t0, c0 = time.perf_counter(), time.process_time()
    observe = det.observe
    observe_many = getattr(det, "observe_many", None)  # absent before 2026-12 (A/B runs)
    step = batch or 1
    for lo in range(0, len(evs), step):
        if batch and observe_many is not None:
            hits.extend(observe_many(evs[lo : lo + batch]))
        else:
            hits.extend(observe(evs[lo]))
        if (lo + step) % 5000 == 0:
            s0 = time.perf_counter()
            blob = det.snapshot()
            snaps.append(time.perf_counter() - s0)
            size = len(blob)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    return total - sum(snaps), cpu - sum(snaps), hits, snaps, size


def hit_keys(hits: list[Hit]) -> list[tuple[str, str, str, int]]:
    return [(h.rule_id, h.key, h.timestamp.isoformat(), h.count) for h in hits]


def hostile(evs: list[Event]) -> float:
    det = Detector(load_rulesets([bundled_rules_dir()], {}))
    base = evs[0]
    payload = "/" + ("%2e%2e%2f" * 40000) + ("<a(" * 100000) + "A" * 300000
    ev = replace(base, path=payload[: 1 << 20], query="q=" + "'%20or%201=1" * 1000)
    t0 = time.perf_counter()
    det.observe(ev)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=5000, help="events per observe_many (0: observe)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument(
        "--hits",
        type=Path,
        help="write (rule, key, time, count) of every hit here as JSON, or"
        " compare with what is there (the same hits before and after a change)",
    )
    args = ap.parse_args()
    evs = events(args.events)
    ruleset = load_rulesets([bundled_rules_dir()], {})
    print(f"{len(evs)} events, {ruleset.version}")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(evs, args.batch)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    best = best_cpu = None
    hits: list[Hit] = []
    for k in range(args.repeat):
        if k:  # fresh events: string and datetime hashes are not cached yet, as in a scan
            evs = events(args.events)
        secs, cpu, hits, snaps, size = run(evs, args.batch)
        best = secs if best is None else min(best, secs)
        best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
        print(
            f"  observe: {secs / len(evs) * 1e6:.2f} us/event ({len(evs) / secs:,.0f} events/s),"
            f" cpu {cpu / len(evs) * 1e6:.2f} us/event, {len(hits)} hits;"
            f" snapshot: {sum(snaps) / max(1, len(snaps)) * 1e3:.2f} ms avg,"
            f" {max(snaps, default=0) * 1e3:.2f} ms max, {size} bytes"
        )
    assert best is not None and best_cpu is not None
    if args.hits is not None:
        got = orjson.loads(orjson.dumps(hit_keys(hits)))
        if args.hits.exists():
            want = orjson.loads(args.hits.read_bytes())
            same = got == want
            print(f"hits {'the same as' if same else 'DIFFERENT from'} {args.hits}")
            if not same:
                raise SystemExit(1)
        else:
            args.hits.write_bytes(orjson.dumps(got))
            print(f"hits written to {args.hits}")
    print(
        f"best: {best / len(evs) * 1e6:.2f} us/event (cpu {best_cpu / len(evs) * 1e6:.2f} us/event)"
    )
    print(f"hostile 1 MB URL: {hostile(evs) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
