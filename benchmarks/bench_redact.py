"""Redactor cost per call: clean fast paths, cache hits and misses, dirty values, hostile input.

    .venv/bin/python benchmarks/bench_redact.py [--n 200000] [--repeat 5] [--no-hostile]

"hit" reuses strings the redactor has seen (its clean-string memo answers); "miss" gives
it a new string every call (a new id in the path, a new version in the user agent), which
is what a decoder sees for never-seen values. Strings are fresh objects either way, so no
cached str hash helps. Numbers are the best of ``--repeat`` runs, one core.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

from auditor.redact import Redactor

KEY = bytes(range(32))
UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


def fresh(s: str) -> str:
    """An equal string that is a different object (its hash is not cached yet)."""
    return (s + "\x00")[:-1]


def per_call(fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for a in args:
            fn(*a)
        best = min(best, time.perf_counter() - t0)
    return best / len(args) * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-hostile", action="store_true")
    args = ap.parse_args()
    n, rep = args.n, args.repeat
    r = Redactor(KEY)

    def row(label: str, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> None:
        print(f"{label:<58s} {per_call(fn, calls, rep):8.0f} ns/call")

    # warm the memo with the "hit" strings
    r.redact_target("/api/v1/users/42/orders", "page=2")
    r.redact_text(UA)
    print(f"{n} calls per row, best of {rep}")
    row("baseline: empty Python call", lambda *a: None, [("x",)] * n)
    row(
        "target clean, hit   /api/v1/users/42/orders?page=2",
        r.redact_target,
        [(fresh("/api/v1/users/42/orders"), fresh("page=2")) for _ in range(n)],
    )
    row(
        "target clean, hit   /api/v1/users/42/orders (no query)",
        r.redact_target,
        [(fresh("/api/v1/users/42/orders"), None) for _ in range(n)],
    )
    row(
        "target clean, miss  /api/v1/users/<id>/orders?page=2",
        Redactor(KEY).redact_target,
        [(f"/api/v1/users/{i}/orders", fresh("page=2")) for i in range(n)],
    )
    row(
        "target clean, miss  /api/v1/users/<id>/orders (no query)",
        Redactor(KEY).redact_target,
        [(f"/api/v1/users/{i}/orders", None) for i in range(n)],
    )
    row(
        "target clean, miss  /search?q=<word>&page=<n>",
        Redactor(KEY).redact_target,
        [("/search", f"q=red+shoes{i}&page={i % 50}") for i in range(n)],
    )
    row("referer '-'", r.redact_url, [(fresh("-"), "referer") for _ in range(n)])
    row(
        "referer clean, miss https://shop.example.com/p/<id>",
        Redactor(KEY).redact_url,
        [(f"https://shop.example.com/p/{i}", "referer") for i in range(n)],
    )
    row("user agent clean, hit (Chrome)", r.redact_text, [(fresh(UA),) for _ in range(n)])
    row(
        "user agent clean, miss (Chrome/<version>)",
        Redactor(KEY).redact_text,
        [(UA.replace("120.0.0.0", f"120.0.{i}.0"),) for i in range(n)],
    )
    row("user name clean (alice)", r.redact_user, [(fresh("alice"),) for _ in range(n)])
    m = max(n // 20, 1000)
    row(
        "target dirty: e-mail in path + card in query",
        Redactor(KEY).redact_target,
        [(f"/u/john{i}@example.com", f"card=4111111111111111&i={i}") for i in range(m)],
    )
    row(
        "target dirty: password= + access_token=<jwt>",
        Redactor(KEY).redact_target,
        [
            ("/login", f"password=pw{i}&access_token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig{i}")
            for i in range(m)
        ],
    )
    if args.no_hostile:
        return
    hostile = {
        "'%' * 10**6": "%" * 10**6,
        "'a@' * 500000": "a@" * 500_000,
        "'1' * 10**6": "1" * 10**6,
        "'1 ' * 500000": "1 " * 500_000,
        "'eyJ' * 333334": "eyJ" * 333_334,
        "'%2540' * 200000": "%2540" * 200_000,
        "'4111111111111111 ' * 58000": "4111111111111111 " * 58_000,
        "'-' * 10**6": "-" * 10**6,
    }
    print("hostile 1 MB inputs (ms per call: path, query, referer, user agent)")
    for label, s in hostile.items():
        calls: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = [
            ("target", Redactor.redact_target, ("/" + s, None)),
            ("target", Redactor.redact_target, ("/x", s)),
            ("url", Redactor.redact_url, ("https://x.example/?" + s, "referer")),
            ("text", Redactor.redact_text, (s,)),
        ]
        times = []
        for _, method, call_args in calls:
            best = float("inf")
            for _ in range(2):
                fresh_r = Redactor(KEY)
                t0 = time.perf_counter()
                method(fresh_r, *call_args)
                best = min(best, time.perf_counter() - t0)
            times.append(best * 1000)
        print(f"  {label:<32s}" + "".join(f"{t:8.1f}" for t in times))


if __name__ == "__main__":
    main()
