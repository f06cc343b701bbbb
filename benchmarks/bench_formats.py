"""`make bench`: lines/s per log format, whole-process and decode-only.

Generates N lines per format (cached under benchmarks/out), the same requests rendered in
each format, then for each format reports
- whole-process: `log-auditor scan --format X` into a fresh store, median and best of K
  runs, and the best CPU seconds of the scan and its decode workers together, with every
  bundled rule; then the same without rules (``[rules] bundled = false``: decoding and
  storing alone);
- decode-only: the in-process decoder (real redactor) over pre-split lines, median of K,
  as lines/s and µs/line.

    .venv/bin/python benchmarks/bench_formats.py [--lines N] [--runs K] [--only a,b]
        [--traffic typical|stress]

The traffic (``--traffic``): ``typical``, the default, is the request stream of
``bench_scan.py`` (``gen_lines.requests``: a day of Zipf-distributed clients, one request
in eight a 404, one in 200 with PII in its URL, a few probes), so a format's figures differ
from the nginx ones by the format alone. ``stress`` is hit-heavy: 500 clients, a third of
the answers errors and one in eight a 400, 401 or 403 (real logs have a few in a
thousand), a sixth of the requests to ``/login``. With rules its scans measure detection
under attack-like load more than the format.

The scans run with their bytecode cached (under benchmarks/out/pycache, even when
PYTHONDONTWRITEBYTECODE is set), as an installed log-auditor does: compiling every module
from source again cost each of the two processes about 0.2 s at start.

The scans go round by round: each round scans every format once with rules and once
without, then (where installed) times goaccess on the nginx-combined input, the machine's
speed at that moment. A host whose speed drifts over minutes then shifts every format
alike, not the ones measured last; the goaccess line says how fast the machine was.

Timings on a shared machine are noisy: compare figures from one run with each other, and
trust the CPU seconds and the best of K more than the median wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from gen_lines import requests

from auditor.formats import FormatSpec, build_decoder
from auditor.model import Line
from auditor.redact import Redactor

START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
PATHS = ["/", "/api/v1/items", "/api/v1/items/{n}", "/login", "/static/app.js", "/search"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.4.0", "okhttp/4.12.0", "Go-http-client/2.0"]
STATUSES = [200] * 12 + [201, 204, 301, 304, 400, 401, 403, 404, 404, 500, 502]


class Req:
    """One request, as every format renders it (see ``TRAFFIC``)."""

    __slots__ = ("agent", "ip", "method", "n", "path", "port", "query", "size", "status", "t")

    def __init__(
        self,
        n: int,
        t: datetime,
        ip: str,
        method: str,
        target: str,
        status: int,
        size: int,
        agent: str,
        port: int,
    ) -> None:
        self.n, self.t, self.ip, self.method = n, t, ip, method
        path, sep, query = target.partition("?")
        self.path, self.query = path, query if sep else ""
        self.status, self.size, self.agent, self.port = status, size, agent, port

    @property
    def target(self) -> str:
        return self.path + ("?" + self.query if self.query else "")

    def iso(self) -> str:
        return self.t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def typical(n: int) -> Iterator[Req]:
    """The traffic of ``bench_scan.py`` (``gen_lines.requests``: a day of requests from
    Zipf-distributed clients, about 1 in 200 with PII in its URL, a few probes, one in
    eight a 404), so a format's figure differs from the nginx one by the format alone."""
    for q in requests(n):
        port = 30000 + q.n * 7919 % 30000
        yield Req(q.n, q.t, q.ip, "GET", q.target, q.status, q.size, q.agent, port)


def stress(n: int) -> Iterator[Req]:
    """Hit-heavy traffic: 500 clients, a third of the answers errors (one in eight a 400,
    401 or 403), a sixth of the requests to ``/login``, 140 requests a second: every
    client past the slow-bruteforce threshold and most routes over their volume limits,
    so detection does far more than on real traffic (see ``--traffic``)."""
    rnd = random.Random(7)
    for i in range(n):
        ip = f"198.51.100.{rnd.randrange(1, 255)}" if i % 3 else f"203.0.113.{i % 250 + 1}"
        port = 30000 + rnd.randrange(30000)
        method = "POST" if i % 9 == 0 else "GET"
        path = rnd.choice(PATHS).replace("{n}", str(rnd.randrange(10000)))
        query = f"?page={i % 40}&q=item{i % 97}" if i % 4 == 0 else ""
        status = rnd.choice(STATUSES)
        size = rnd.randrange(0, 40000)
        agent = rnd.choice(AGENTS)
        t = START + timedelta(milliseconds=i * 7)
        yield Req(i, t, ip, method, path + query, status, size, agent, port)


def _json(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def combined(r: Req) -> str:
    t = r.t.strftime("%d/%b/%Y:%H:%M:%S +0000")
    return (
        f'{r.ip} - - [{t}] "{r.method} {r.target} HTTP/1.1" {r.status} {r.size}'
        f' "https://www.example.com/" "{r.agent}"'
    )


def alb(r: Req) -> str:
    return (
        f"https {r.t.isoformat(timespec='microseconds').replace('+00:00', 'Z')}"
        f" app/my-lb/490d68edf04676fe {r.ip}:{r.port} 10.0.0.1:80 0.000 0.012 0.000"
        f" {r.status} {r.status} 120 {r.size}"
        f' "{r.method} https://www.example.com:443{r.target} HTTP/1.1" "{r.agent}"'
        " ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2"
        " arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/t/73e2d6bc24d8a067"
        f' "Root=1-58337262-{r.n:024x}" "www.example.com" "arn:aws:acm:cert/x" 0'
        f' {r.iso()} "forward" "-" "-" "10.0.0.1:80" "{r.status}" "-" "-" TID_{r.n:016x}'
        ' "-" "-" "-"'
    )


def haproxy(r: Req) -> str:
    t = r.t.strftime("%d/%b/%Y:%H:%M:%S.") + f"{r.t.microsecond // 1000:03d}"
    return (
        f"{r.ip}:{r.port} [{t}] fe_https~ bk_app/app1 0/0/1/11/12 {r.status} {r.size}"
        f' - - ---- 3/3/0/0/0 0/0 "{r.method} {r.target} HTTP/1.1"'
    )


def envoy_text(r: Req) -> str:
    return (
        f'[{r.iso()}] "{r.method} {r.target} HTTP/1.1" {r.status} - 120 {r.size} 12 11'
        f' "{r.ip}" "{r.agent}" "{r.n:08x}-cf5c-432b-8c7e-98aeb7988cd2" "api.example.com"'
        ' "10.0.2.1:80"'
    )


def w3c(r: Req) -> str:
    q = r.query or "-"
    agent = r.agent.replace(" ", "+")
    return (
        f"{r.t:%Y-%m-%d %H:%M:%S} 10.0.0.5 {r.method} {r.path} {q} 443 - {r.ip} {agent}"
        f" https://www.example.com/ {r.status} 0 0 12"
    )


W3C_HEADER = [
    "#Software: Microsoft Internet Information Services 10.0",
    "#Version: 1.0",
    (
        "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip"
        " cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken"
    ),
]


def envoy_json(r: Req) -> str:
    return _json(
        {
            "start_time": r.iso(),
            "method": r.method,
            "path": r.target,
            "protocol": "HTTP/1.1",
            "response_code": r.status,
            "response_flags": "-",
            "bytes_received": 120,
            "bytes_sent": r.size,
            "duration": 12,
            "downstream_remote_address": f"{r.ip}:{r.port}",
            "x-forwarded-for": r.ip,
            "user-agent": r.agent,
            "x-request-id": f"{r.n:08x}-cf5c-432b-8c7e-98aeb7988cd2",
            ":authority": "api.example.com",
            "upstream_host": "10.0.2.1:80",
            "requested_server_name": "api.example.com",
        }
    )


def caddy(r: Req) -> str:
    return _json(
        {
            "level": "info",
            "ts": r.t.timestamp(),
            "logger": "http.log.access.log0",
            "msg": "handled request",
            "request": {
                "remote_ip": r.ip,
                "remote_port": str(r.port),
                "client_ip": r.ip,
                "proto": "HTTP/2.0",
                "method": r.method,
                "host": "www.example.com",
                "uri": r.target,
                "headers": {"User-Agent": [r.agent], "Accept": ["*/*"]},
                "tls": {"resumed": False, "version": 772, "cipher_suite": 4865, "proto": "h2"},
            },
            "bytes_read": 0,
            "user_id": "",
            "duration": 0.012,
            "size": r.size,
            "status": r.status,
            "resp_headers": {"Content-Type": ["text/html"]},
        }
    )


def traefik(r: Req) -> str:
    return _json(
        {
            "ClientAddr": f"{r.ip}:{r.port}",
            "ClientHost": r.ip,
            "ClientPort": str(r.port),
            "ClientUsername": "-",
            "DownstreamContentSize": r.size,
            "DownstreamStatus": r.status,
            "Duration": 12000000,
            "OriginContentSize": r.size,
            "OriginDuration": 11000000,
            "OriginStatus": r.status,
            "Overhead": 1000000,
            "RequestAddr": "www.example.com",
            "RequestContentSize": 0,
            "RequestCount": r.n,
            "RequestHost": "www.example.com",
            "RequestMethod": r.method,
            "RequestPath": r.target,
            "RequestPort": "443",
            "RequestProtocol": "HTTP/2.0",
            "RequestScheme": "https",
            "RetryAttempts": 0,
            "RouterName": "web@docker",
            "ServiceAddr": "10.0.0.2:80",
            "ServiceName": "web@docker",
            "StartLocal": r.iso(),
            "StartUTC": r.iso(),
            "TLSCipher": "TLS_AES_128_GCM_SHA256",
            "TLSVersion": "1.3",
            "entryPointName": "websecure",
            "level": "info",
            "msg": "",
            "request_User-Agent": r.agent,
            "time": r.iso(),
        }
    )


def cloudflare(r: Req) -> str:
    ns = int(r.t.timestamp()) * 1_000_000_000 + r.t.microsecond * 1000
    return _json(
        {
            "ClientIP": r.ip,
            "ClientRequestHost": "www.example.com",
            "ClientRequestMethod": r.method,
            "ClientRequestURI": r.target,
            "ClientRequestProtocol": "HTTP/2",
            "ClientRequestScheme": "https",
            "ClientRequestUserAgent": r.agent,
            "ClientRequestReferer": "https://www.example.com/",
            "ClientSSLProtocol": "TLSv1.3",
            "ClientSrcPort": r.port,
            "EdgeResponseBytes": r.size,
            "EdgeResponseStatus": r.status,
            "EdgeStartTimestamp": ns,
            "EdgeEndTimestamp": ns + 12_000_000,
            "RayID": f"{r.n:016x}",
            "CacheCacheStatus": "miss",
            "OriginResponseStatus": r.status,
            "WAFAction": "unknown",
        }
    )


def kong(r: Req) -> str:
    return _json(
        {
            "request": {
                "method": r.method,
                "uri": r.target,
                "url": f"https://api.example.com:8443{r.target}",
                "size": 86,
                "querystring": {},
                "headers": {"host": "api.example.com:8443", "user-agent": r.agent},
                "tls": {"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384"},
            },
            "upstream_uri": r.target,
            "response": {"status": r.status, "size": r.size, "headers": {}},
            "tries": [{"ip": "10.0.0.9", "port": 80, "balancer_latency": 0}],
            "client_ip": r.ip,
            "latencies": {"request": 12, "kong": 1, "proxy": 11},
            "started_at": int(r.t.timestamp() * 1000),
            "service": {"name": "api"},
            "route": {"name": "api"},
        }
    )


def generic_json(r: Req) -> str:
    return _json(
        {
            "time_iso8601": r.t.isoformat(timespec="seconds"),
            "remote_addr": r.ip,
            "remote_user": "",
            "request_method": r.method,
            "request_uri": r.target,
            "server_protocol": "HTTP/1.1",
            "status": r.status,
            "body_bytes_sent": r.size,
            "request_time": 0.012,
            "http_referer": "https://www.example.com/",
            "http_user_agent": r.agent,
            "host": "www.example.com",
            "scheme": "https",
        }
    )


# name → (format given to --format, line renderer, header lines)
FORMATS: dict[str, tuple[str, Callable[[Req], str], list[str]]] = {
    "envoy-json": ("envoy", envoy_json, []),
    "caddy": ("caddy", caddy, []),
    "traefik-json": ("traefik-json", traefik, []),
    "cloudflare": ("cloudflare", cloudflare, []),
    "kong-json": ("kong-json", kong, []),
    "json": ("json", generic_json, []),
    "combined": ("combined", combined, []),
    "aws-alb": ("aws-alb", alb, []),
    "haproxy": ("haproxy", haproxy, []),
    "envoy-text": ("envoy", envoy_text, []),
    "w3c": ("w3c", w3c, W3C_HEADER),
}
JSON_FORMATS = ("envoy-json", "caddy", "traefik-json", "cloudflare", "kong-json", "json")


TRAFFIC: dict[str, Callable[[int], Iterator[Req]]] = {"typical": typical, "stress": stress}


def generate(render: Callable[[Req], str], n: int, traffic: str = "typical") -> Iterator[str]:
    for req in TRAFFIC[traffic](n):
        yield render(req)


def ensure_input(name: str, n: int, traffic: str = "typical") -> Path:
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    path = out / f"fmt-{name}-{traffic}-{n}.log"
    if not path.exists():
        _fmt, render, header = FORMATS[name]
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as f:
            if header:
                f.write("\n".join(header) + "\n")
            for line in generate(render, n, traffic):
                f.write(line + "\n")
        tmp.rename(path)
    return path


def scan_env() -> dict[str, str]:
    """The environment of the timed scans: bytecode written to and read from a cache of
    the bench's own, so no run compiles the sources (the first, untimed, fills it)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(HERE / "out" / "pycache")
    return env


def warm_bytecode(env: dict[str, str]) -> None:
    """Import what a scan imports once, so its bytecode is cached before any timing."""
    cmd = [sys.executable, "-c", "import auditor.cli.scan, auditor.decodeworker"]
    subprocess.run(cmd, env=env, capture_output=True, check=False)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def scan_once(fmt: str, path: Path, config: Path | None = None) -> tuple[float, float]:
    """Wall seconds of one `log-auditor scan --format fmt` into a fresh store, and the CPU
    seconds of the scan with its workers (waited-for children count); ``config``: a
    config file (the default: every bundled rule)."""
    env = scan_env()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        cmd = [sys.executable, "-m", "auditor", "scan", "--db", str(db)]
        if config is not None:
            cmd += ["--config", str(config)]
        cmd += ["--format", fmt, "--quiet", str(path)]
        c0 = _children_cpu()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        wall = time.perf_counter() - t0
        cpu = _children_cpu() - c0
    if proc.returncode != 0:
        raise SystemExit(f"scan failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return wall, cpu


def goaccess_once(goaccess: str, path: Path) -> float:
    """Wall seconds of goaccess over an nginx-combined file (the machine's speed now)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [goaccess, str(path), "--log-format=COMBINED", "--no-progress"]
        cmd += ["--no-parsing-spinner", "-o", str(Path(tmp) / "out.json")]
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        return time.perf_counter() - t0


def decode_only(fmt: str, path: Path, runs: int) -> tuple[float, int]:
    """Median seconds to decode every line in-process, and how many parsed."""
    texts = path.read_text(encoding="utf-8").splitlines()
    lines = [Line("bench", str(path), i, i + 1, t) for i, t in enumerate(texts)]
    best: list[float] = []
    parsed = 0
    for _ in range(runs):
        decode = build_decoder(FormatSpec(fmt), Redactor(b"k" * 32), "bench")
        t0 = time.perf_counter()
        parsed = sum(1 for line in lines if decode(line) is not None)
        best.append(time.perf_counter() - t0)
    return statistics.median(best), parsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(FORMATS))
    ap.add_argument("--no-scan", action="store_true", help="decode-only figures")
    ap.add_argument("--no-decode", action="store_true", help="whole-process figures only")
    ap.add_argument(
        "--traffic",
        choices=sorted(TRAFFIC),
        default="typical",
        help="typical: bench_scan.py's requests (the default); stress: hit-heavy",
    )
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(FORMATS)
    print(
        f"{args.lines} lines per format, {args.traffic} traffic, median of {args.runs} runs,"
        f" {os.cpu_count()} CPUs"
    )
    no_rules = Path(tempfile.mkdtemp(prefix="la-bench-")) / "norules.toml"
    no_rules.write_text("[rules]\nbundled = false\n")
    paths = {name: ensure_input(name, args.lines, args.traffic) for name in names}
    decoded = {
        name: decode_only(FORMATS[name][0], paths[name], args.runs)
        for name in names
        if not args.no_decode
    }
    # name -> (rules walls, rules CPUs, bare walls)
    scans: dict[str, tuple[list[float], list[float], list[float]]] = {
        n: ([], [], []) for n in names
    }
    goaccess = shutil.which("goaccess")
    reference = ensure_input("combined", args.lines, args.traffic) if goaccess else None
    ref_walls: list[float] = []
    if not args.no_scan:
        warm_bytecode(scan_env())
        for _ in range(args.runs):  # round by round: see the module's docstring
            for name in names:
                fmt = FORMATS[name][0]
                wall, cpu = scan_once(fmt, paths[name])
                scans[name][0].append(wall)
                scans[name][1].append(cpu)
                scans[name][2].append(scan_once(fmt, paths[name], no_rules)[0])
            if goaccess and reference is not None:
                ref_walls.append(goaccess_once(goaccess, reference))
    print(
        f"{'format':14s} {'scan lines/s':>13s} {'best':>8s} {'scan CPU s':>10s}"
        f" {'no rules':>9s} {'best':>8s} {'decode lines/s':>15s} {'µs/line':>8s}  parsed"
    )
    for name in names:
        dec_s, parsed = decoded.get(name, (0.0, -1))
        scan, best, cpu, bare, bare_best = "-", "-", "-", "-", "-"
        walls, cpus, bare_walls = scans[name]
        if walls:
            scan = f"{args.lines / statistics.median(walls):,.0f}"
            best = f"{args.lines / min(walls):,.0f}"
            cpu = f"{min(cpus):.2f}"
            bare = f"{args.lines / statistics.median(bare_walls):,.0f}"
            bare_best = f"{args.lines / min(bare_walls):,.0f}"
        mark = " (JSON)" if name in JSON_FORMATS else ""
        decode = "-", "-", "-"
        if parsed >= 0:
            decode = (f"{args.lines / dec_s:,.0f}", f"{dec_s / args.lines * 1e6:.2f}", f"{parsed}")
        print(
            f"{name:14s} {scan:>13s} {best:>8s} {cpu:>10s} {bare:>9s} {bare_best:>8s}"
            f" {decode[0]:>15s} {decode[1]:>8s}  {decode[2]}/{args.lines}{mark}",
            flush=True,
        )
    if ref_walls:
        rates = ", ".join(f"{args.lines / w:,.0f}" for w in ref_walls)
        print(
            f"goaccess on the nginx-combined input, each round: {rates} lines/s"
            f" (median {args.lines / statistics.median(ref_walls):,.0f})"
        )


if __name__ == "__main__":
    main()
