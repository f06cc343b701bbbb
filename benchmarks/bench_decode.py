"""Decoder throughput on generated lines (one core, decoder alone).

    .venv/bin/python benchmarks/bench_decode.py [--lines 200000] [--format nginx-combined]
        [--redactor passthrough|real] [--repeat 3]

CLF formats read ``benchmarks/gen_lines.py`` traffic (~175 bytes, ~1 in 200 with PII in
the query); the other formats of ``bench_formats.py`` (``envoy-json``, ``caddy``,
``traefik-json``, ``cloudflare``, ``kong-json``, ``json``, ``aws-alb``, ``haproxy``,
``envoy-text``, ``w3c``) its synthetic stream rendered in that format. Lines are built into
``Line`` objects before timing, so only decoding is measured.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_formats import FORMATS, generate
from gen_lines import lines as gen_lines

from auditor.formats import FormatSpec, build_decoder
from auditor.model import Line
from auditor.normalize import PassThroughRedactor, RedactorLike


def make_redactor(kind: str) -> RedactorLike:
    if kind == "real":
        from auditor.redact import Redactor

        return Redactor(b"k" * 32)
    return PassThroughRedactor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--format", default="nginx-combined")
    ap.add_argument("--redactor", choices=("passthrough", "real"), default="passthrough")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    fmt = args.format
    if fmt in FORMATS and fmt != "combined":
        fmt, render, header = FORMATS[args.format]
        texts = header + list(generate(render, args.lines))
    else:
        texts = list(gen_lines(args.lines))
    batch: list[Line] = []
    offset = 0
    for text in texts:
        end = offset + len(text) + 1
        batch.append(Line("bench", "/var/log/nginx/access.log", offset, end, text))
        offset = end
    avg = offset / max(len(batch), 1)

    best = best_cpu = float("inf")
    parsed = 0
    for _ in range(args.repeat):
        decode = build_decoder(FormatSpec(fmt), make_redactor(args.redactor), "bench")
        t0, c0 = time.perf_counter(), time.process_time()
        parsed = sum(1 for line in batch if decode(line) is not None)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    n = len(batch)
    print(
        f"{n} lines ({avg:.0f} B avg), format={args.format}, redactor={args.redactor}: "
        f"parsed {parsed}; best of {args.repeat}: wall {best:.3f} s = {n / best:,.0f} lines/s, "
        f"CPU {best_cpu:.3f} s = {n / best_cpu:,.0f} lines/s ({best_cpu / n * 1e6:.2f} us/line)"
    )


if __name__ == "__main__":
    main()
