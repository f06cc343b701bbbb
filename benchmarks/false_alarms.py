"""Findings per rule over the real access logs of the corpus (a false-alarm census).

    .venv/bin/python benchmarks/false_alarms.py [--corpus DIR] [--by-file]

Every access-log file of ``../shared/corpus`` (or ``$LOG_AUDITOR_CORPUS``) is scanned with
``log-auditor scan`` (its own format, a fresh store per file, every bundled rule on), then
``log-auditor findings --json`` is counted per rule. The attack fixtures of CrowdSec and
fail2ban are *meant* to raise findings; the rest (elastic ``apache_logs``, lnav,
the CrowdSec parser fixtures) are real traffic where every finding needs a reason.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent

# file (relative to the corpus) -> (format, kind): "attack" fixtures vs "real" traffic.
FILES: dict[str, tuple[str, str]] = {
    "elastic-examples/apache_logs": ("combined", "real"),
    "lnav/logfile_access_log.0": ("combined", "real"),
    "lnav/logfile_access_log.1": ("combined", "real"),
    "lnav/logfile_shop_access_log.0": ("combined", "real"),
    "lnav/logfile_caddy_log.0": ("caddy", "real"),
    "lnav/logfile_cloudflare.json": ("cloudflare", "real"),
    "lnav/logfile_haproxy.0": ("haproxy", "real"),
    "crowdsec-hub/apache2-logs/apache2-logs.log": ("combined", "real"),
    "crowdsec-hub/aws-alb-logs/aws-alb-logs.log": ("aws-alb", "real"),
    "crowdsec-hub/caddy-logs/caddy-logs.log": ("caddy", "real"),
    "crowdsec-hub/envoy-logs/envoy.log": ("envoy", "real"),
    "crowdsec-hub/haproxy-logs/haproxy-logs.log": ("haproxy", "real"),
    "crowdsec-hub/nginx_http-logs/nginx_http-logs.log": ("combined", "real"),
    "crowdsec-hub/traefik_clf/traefik_clf.log": ("traefik-clf", "real"),
    "crowdsec-hub/traefik_json/traefik_json.log": ("traefik-json", "real"),
    "crowdsec-hub/apache-http-probing/apache-http-probing.log": ("common", "attack"),
    "crowdsec-hub/apache2-http-sensitive-files/apache2-http-sensitive-files.log": (
        "common",
        "attack",
    ),
    "crowdsec-hub/apache_log4j2_cve-2021-44228/apache_log4j2_cve-2021-44228.log": (
        "combined",
        "attack",
    ),
    "crowdsec-hub/caddy-basic-auth-bf/caddy-logs.log": ("caddy", "attack"),
    "crowdsec-hub/http-bf-wordpress-bf/http-bf-wordpress-bf.log": ("combined", "attack"),
    "crowdsec-hub/http-dos-random-uri/http_dos_random_uri.log": ("combined", "attack"),
    "crowdsec-hub/http-generic-test/http-generic-test.log": ("combined", "attack"),
    "crowdsec-hub/nginx-http-path-traversal/nginx-http-path-traversal.log": ("combined", "attack"),
    "crowdsec-hub/nginx-http-sensitive-files/nginx-http-sensitive-files.log": (
        "combined",
        "attack",
    ),
    "crowdsec-hub/nginx-http-sqli-probing/nginx-http-sqli-probing.log": ("combined", "attack"),
    "crowdsec-hub/nginx-http-xss-probing/nginx-http-xss-probing.log": ("combined", "attack"),
    "fail2ban/haproxy-http-auth": ("haproxy", "attack"),
    "fail2ban/nginx-bad-request": ("combined", "attack"),
    "fail2ban/traefik-auth": ("traefik-clf", "attack"),
}


def corpus_dir(given: str | None) -> Path | None:
    for cand in (given, os.environ.get("LOG_AUDITOR_CORPUS"), str(ROOT.parent / "shared/corpus")):
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None


def la(*args: str) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "auditor", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, "LOG_AUDITOR_CONFIG": ""},
    )
    if res.returncode != 0:
        raise SystemExit(f"log-auditor {' '.join(args)}: exit {res.returncode}: {res.stderr}")
    return res.stdout


def findings_of(path: Path, fmt: str, work: Path) -> list[dict[str, object]]:
    db = work / (path.name + ".db")
    la("scan", "--quiet", "--db", str(db), "--format", fmt, str(path))
    out = la("findings", "--db", str(db), "--json")
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", help="corpus directory (default: ../shared/corpus)")
    ap.add_argument("--by-file", action="store_true", help="also list findings per file")
    args = ap.parse_args()
    corpus = corpus_dir(args.corpus)
    if corpus is None:
        raise SystemExit("corpus absent: pass --corpus or set LOG_AUDITOR_CORPUS")
    per_kind: dict[str, Counter[str]] = {"real": Counter(), "attack": Counter()}
    lines: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for rel, (fmt, kind) in FILES.items():
            path = corpus / rel
            if not path.exists():
                print(f"missing: {rel}", file=sys.stderr)
                continue
            lines[kind] += sum(1 for _ in path.open("rb"))
            rows = findings_of(path, fmt, Path(tmp))
            per_kind[kind].update(str(r["rule_id"]) for r in rows)
            if args.by_file:
                got = Counter(str(r["rule_id"]) for r in rows)
                listed = ", ".join(f"{k} {v}" for k, v in sorted(got.items())) or "none"
                print(f"{kind:6s} {rel}: {listed}")
    for kind, title in (("real", "real traffic"), ("attack", "attack fixtures")):
        counts = per_kind[kind]
        print(f"\n{title}: {lines[kind]} lines, {sum(counts.values())} findings")
        for rule, n in sorted(counts.items(), key=lambda x: (-x[1], x[0])):
            print(f"  {n:5d}  {rule}")


if __name__ == "__main__":
    main()
