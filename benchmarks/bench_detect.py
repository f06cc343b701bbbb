"""Detection alone: ``Detector.observe`` over pre-decoded events, every bundled rule on.

    .venv/bin/python benchmarks/bench_detect.py [--events 200000] [--repeat 3] [--profile]

Events come from ``benchmarks/gen_lines.py`` (one client in ~200 requests leaks PII, a few
probe or brute force), decoded and redacted once before timing, so only detection is
measured. Also reports the snapshot cost (the pipeline takes one per batch of 5000 lines)
and the time for one request with a hostile 1 MB URL.
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

from gen_lines import lines as gen_lines

from auditor.detect import Detector
from auditor.formats import FormatSpec, build_decoder
from auditor.model import Event, Line
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


def run(evs: list[Event]) -> tuple[float, int, list[float], int]:
    ruleset = load_rulesets([bundled_rules_dir()], {})
    det = Detector(ruleset)
    hits = 0
    snaps: list[float] = []
    size = 0
    t0 = time.perf_counter()
    observe = det.observe
    for i, ev in enumerate(evs):
        hits += len(observe(ev))
        if i % 5000 == 4999:
            s0 = time.perf_counter()
            blob = det.snapshot()
            snaps.append(time.perf_counter() - s0)
            size = len(blob)
    total = time.perf_counter() - t0
    return total - sum(snaps), hits, snaps, size


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
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    evs = events(args.events)
    ruleset = load_rulesets([bundled_rules_dir()], {})
    print(f"{len(evs)} events, {ruleset.version}")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(evs)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    best = None
    for _ in range(args.repeat):
        secs, hits, snaps, size = run(evs)
        best = secs if best is None else min(best, secs)
        print(
            f"  observe: {secs / len(evs) * 1e6:.2f} us/event ({len(evs) / secs:,.0f} events/s),"
            f" {hits} hits; snapshot: {sum(snaps) / max(1, len(snaps)) * 1e3:.2f} ms avg,"
            f" {max(snaps, default=0) * 1e3:.2f} ms max, {size} bytes"
        )
    assert best is not None
    print(f"best: {best / len(evs) * 1e6:.2f} us/event")
    print(f"hostile 1 MB URL: {hostile(evs) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
