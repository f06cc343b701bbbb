"""The real corpus raises what its authors expect, and real traffic stays quiet.

- CrowdSec: every alert of a ``scenario.assert`` (scenario, source IP) yields a finding of
  the fitting category for that IP, through the real pipeline (``scan`` of the scenario's
  log with its format into a real store, then ``findings --json``).
- fail2ban: every ``failJSON`` line with ``"match": true`` counts toward (or fires) a
  fitting rule, as ``log-auditor explain`` shows it (``Detector.verdict``), for the IP
  fail2ban blames; every ``"match": false`` line counts toward none of them. Cases we do
  not (or should not) match are listed below as xfail, each with its reason.
- False alarms: no ``pii-in-url`` on the 10,000 real lines of elastic ``apache_logs``
  (their User-Agent strings carry e-mail addresses), and a two-hour fixture of normal API
  traffic raises no finding at all.

Files are read in place from ../shared/corpus (or $LOG_AUDITOR_CORPUS); the tests skip
with a reason where it is absent. Nothing is copied into the repository.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from auditor.cli import _register, cli
from auditor.detect import Detector
from auditor.formats import FormatSpec, build_decoder
from auditor.model import Line
from auditor.redact import Redactor
from auditor.rules import bundled_rules_dir, load_rulesets
from factories import corpus_dir

_register()
CORPUS = corpus_dir()
ABSENT = "corpus absent: set LOG_AUDITOR_CORPUS or put ../shared/corpus beside the repo"
needs_corpus = pytest.mark.skipif(CORPUS is None, reason=ABSENT)
RULESET = load_rulesets([bundled_rules_dir()], {})


def run_cli(*args: str) -> str:
    res = CliRunner().invoke(cli, list(args), env={"LOG_AUDITOR_CONFIG": ""})
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res.output


def scan_findings(path: Path, fmt: str, db: Path) -> list[dict[str, Any]]:
    run_cli("scan", "--quiet", "--db", str(db), "--format", fmt, str(path))
    out = run_cli("findings", "--db", str(db), "--json")
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


# --- CrowdSec scenarios --------------------------------------------------------------------

# Scenario name (as in scenario.assert) -> the categories that fit it.
SCENARIO_CATEGORIES: dict[str, set[str]] = {
    "crowdsecurity/http-probing": {"scanner-probe"},
    "crowdsecurity/http-sensitive-files": {"scanner-probe"},
    "crowdsecurity/apache_log4j2_cve-2021-44228": {"injection-probe"},
    "crowdsecurity/http-generic-bf": {"failed-auth-burst", "credential-stuffing"},
    "LePresidente/http-generic-401-bf": {"failed-auth-burst", "credential-stuffing"},
    "crowdsecurity/http-bf-wordpress_bf": {"failed-auth-burst", "credential-stuffing"},
    "crowdsecurity/http-dos-random-uri": {"volume-anomaly"},
    "crowdsecurity/http-generic-test": {"scanner-probe"},  # a canary path, 404
    "crowdsecurity/http-path-traversal-probing": {"injection-probe"},
    "crowdsecurity/http-sqli-probbing-detection": {"injection-probe"},
    "crowdsecurity/http-xss-probbing": {"injection-probe"},
    "crowdsecurity/nginx-req-limit-exceeded": {"volume-anomaly"},
}
# Test folder -> the format of its log (access logs; two nginx error logs, which we read too).
SCENARIO_FORMATS: dict[str, str] = {
    "apache-http-probing": "common",
    "apache2-http-sensitive-files": "common",
    "apache_log4j2_cve-2021-44228": "combined",
    "caddy-basic-auth-bf": "caddy",
    "http-bf-wordpress-bf": "combined",
    "http-dos-random-uri": "combined",
    "http-generic-test": "combined",
    "nginx-http-path-traversal": "combined",
    "nginx-http-sensitive-files": "combined",
    "nginx-http-sqli-probing": "combined",
    "nginx-http-xss-probing": "combined",
    "nginx-http-generic-bf": "nginx-error",  # basic-auth failures only reach the error log
    "nginx_req_limit_exceeded": "nginx-error",  # limit_req refusals, likewise
}
_RESULT = re.compile(r'^"([^"]+)" in results\[(\d+)\]\.Overflow\.GetSources\(\)$', re.MULTILINE)
_SCENARIO = re.compile(
    r'^results\[(\d+)\]\.Overflow\.Alert\.GetScenario\(\) == "([^"]+)"$', re.MULTILINE
)
_COUNT = re.compile(
    r"^results\[(\d+)\]\.Overflow\.Alert\.GetEventsCount\(\) == (\d+)$", re.MULTILINE
)
_LOG_FILE = re.compile(r"^log_file: *(\S+)", re.MULTILINE)


@dataclass(frozen=True)
class Alert:
    folder: str
    scenario: str
    ip: str
    events: int


def scenario_alerts() -> list[Alert]:
    if CORPUS is None:
        return []
    out = []
    for assert_file in sorted((CORPUS / "crowdsec-hub").glob("*/scenario.assert")):
        text = assert_file.read_text()
        ips = {int(i): ip for ip, i in _RESULT.findall(text)}
        names = {int(i): name for i, name in _SCENARIO.findall(text)}
        counts = {int(i): int(n) for i, n in _COUNT.findall(text)}
        for i, name in sorted(names.items()):
            out.append(Alert(assert_file.parent.name, name, ips[i], counts.get(i, 0)))
    return out


ALERTS = scenario_alerts()


@needs_corpus
def test_every_scenario_folder_is_covered() -> None:
    assert CORPUS is not None
    with_alerts = {
        p.parent.name
        for p in (CORPUS / "crowdsec-hub").glob("*/scenario.assert")
        if p.read_text().strip()
    }
    assert with_alerts == set(SCENARIO_FORMATS)
    assert {a.scenario for a in ALERTS} <= set(SCENARIO_CATEGORIES)
    assert len(ALERTS) >= 15


@pytest.fixture(scope="module")
def scenario_findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    if CORPUS is None:
        pytest.skip(ABSENT)
    work = tmp_path_factory.mktemp("crowdsec")
    out = {}
    for folder, fmt in SCENARIO_FORMATS.items():
        base = CORPUS / "crowdsec-hub" / folder
        m = _LOG_FILE.search((base / "config.yaml").read_text())
        assert m is not None, folder
        out[folder] = scan_findings(base / m.group(1), fmt, work / f"{folder}.db")
    return out


@needs_corpus
@pytest.mark.parametrize(
    "alert", ALERTS, ids=[f"{a.folder}:{a.scenario.split('/')[-1]}:{a.ip}" for a in ALERTS]
)
def test_crowdsec_alert_yields_a_fitting_finding(
    alert: Alert, scenario_findings: dict[str, list[dict[str, Any]]]
) -> None:
    fitting = SCENARIO_CATEGORIES[alert.scenario]
    rows = scenario_findings[alert.folder]
    got = [r for r in rows if r["client_ip"] == alert.ip and r["category"] in fitting]
    seen = sorted({(r["rule_id"], r["client_ip"]) for r in rows})
    assert got, f"no {sorted(fitting)} finding for {alert.ip}; findings: {seen}"
    # The finding covers at least as many events as CrowdSec's overflow held.
    assert max(int(r["count"]) for r in got) >= min(alert.events, 1)


# --- fail2ban failJSON -----------------------------------------------------------------------

AUTH = frozenset({"auth.bruteforce-burst", "auth.bruteforce-slow"})
PROBE = frozenset(r.id for r in RULESET.rules if r.category == "scanner-probe")
RATE_LIMITED = frozenset({"abuse.rate-limited"})

# File -> (format, or None for per-line nginx access/error; the rules that fit its filter).
F2B_FILES: dict[str, tuple[str | None, frozenset[str]]] = {
    "haproxy-http-auth": ("haproxy", AUTH),
    "nginx-bad-request": ("combined", PROBE),
    "nginx-botsearch": (None, PROBE),
    "traefik-auth": ("traefik-clf", AUTH),
    "nginx-http-auth": ("nginx-error", AUTH),
    "nginx-forbidden": ("nginx-error", PROBE),
    "nginx-limit-req": ("nginx-error", RATE_LIMITED),
}
F2B_SKIPPED = {
    "apache-auth": "Apache error_log, not an access log: no format of ours reads it",
    "apache-noscript": "Apache error_log, not an access log: no format of ours reads it",
    "apache-overflows": "Apache error_log, not an access log: no format of ours reads it",
}
_TLS = "TLS failure without an HTTP request: not an access event (no request, no status)"
_MODE = (
    "fail2ban's normal/ddos modes split a 401 without a user (the browser's challenge) from "
    "one with a user; we count every 401 toward a burst (fail2ban's aggressive mode) and "
    "let the threshold tell a challenge from guessing"
)
_NOT_REFUSED = (
    "'{what}' from nginx: the request was delayed and then served, not refused; fail2ban "
    "counts it, we count only refusals (limit_req and limit_conn answer 503)"
)
# (file, line number of the log line) -> why it is not matched as fail2ban expects.
F2B_XFAIL: dict[tuple[str, int], str] = {
    ("nginx-http-auth", 30): _TLS,
    ("nginx-http-auth", 32): _TLS,
    ("nginx-http-auth", 34): _TLS,
    ("nginx-http-auth", 39): _TLS,
    ("nginx-http-auth", 41): _TLS,
    ("nginx-http-auth", 43): _TLS,
    ("nginx-http-auth", 47): _TLS,
    ("traefik-auth", 4): _MODE,
    ("traefik-auth", 9): _MODE,
    ("nginx-limit-req", 15): _NOT_REFUSED.format(what="delaying request"),
    ("nginx-limit-req", 18): _NOT_REFUSED.format(what="delaying request"),
}
_NGINX_ERROR_LINE = re.compile(r"^(?:\S+ nginx\[\d+\]: (?:\S+ nginx: )?)?\d{4}/\d\d/\d\d ")


@dataclass(frozen=True)
class FailCase:
    file: str
    lineno: int
    text: str
    match: bool
    host: str | None
    mode: str


def fail_cases() -> Iterator[FailCase]:
    if CORPUS is None:
        return
    for name in F2B_FILES:
        expect: dict[str, Any] | None = None
        mode = ""
        for lineno, line in enumerate((CORPUS / "fail2ban" / name).read_text().splitlines(), 1):
            if line.startswith("# filterOptions:"):
                opts = json.loads(line.split(":", 1)[1])
                opts = opts if isinstance(opts, list) else [opts]
                mode = "+".join(str(o.get("mode") or o.get("logtype", "")) for o in opts)
            elif line.startswith("# failJSON:"):
                expect = json.loads(line.split(":", 1)[1])
            elif line.strip() and not line.startswith("#") and expect is not None:
                yield FailCase(name, lineno, line, bool(expect["match"]), expect.get("host"), mode)
                expect = None


def _param(c: FailCase) -> Any:
    marks = []
    why = F2B_XFAIL.get((c.file, c.lineno))
    if why is not None:
        marks.append(pytest.mark.xfail(reason=why, strict=True))
    verdict = "match" if c.match else "nomatch"
    mode = f"-{c.mode}" if c.mode else ""
    return pytest.param(c, marks=marks, id=f"{c.file}:L{c.lineno}-{verdict}{mode}")


CASES = [_param(c) for c in fail_cases()]
_DECODERS: dict[str, Any] = {}


def decoder(fmt: str) -> Any:
    if fmt not in _DECODERS:
        _DECODERS[fmt] = build_decoder(FormatSpec(fmt), Redactor(b"k" * 32), "fail2ban")
    return _DECODERS[fmt]


def same_ip(a: str, b: str) -> bool:
    x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    x = x.ipv4_mapped or x if isinstance(x, ipaddress.IPv6Address) else x
    y = y.ipv4_mapped or y if isinstance(y, ipaddress.IPv6Address) else y
    return x == y


@needs_corpus
def test_every_fail2ban_file_is_covered_or_skipped_with_a_reason() -> None:
    assert CORPUS is not None
    files = {p.name for p in (CORPUS / "fail2ban").iterdir() if p.name != "README.md"}
    assert files == set(F2B_FILES) | set(F2B_SKIPPED)
    assert len(CASES) >= 50


@needs_corpus
@pytest.mark.parametrize("case", CASES)
def test_fail2ban_line(case: FailCase) -> None:
    fmt, fitting = F2B_FILES[case.file]
    if fmt is None:
        fmt = "nginx-error" if _NGINX_ERROR_LINE.match(case.text) else "combined"
    ev = decoder(fmt)(Line("fail2ban", case.file, 0, len(case.text) + 1, case.text))
    det = Detector(RULESET)
    if not case.match:
        if ev is not None:
            wrong = [det.verdict(ev, rid) for rid in sorted(fitting)]
            assert all(v.verdict == "no" for v in wrong), wrong
        return
    assert ev is not None, f"does not parse as {fmt}"
    if case.host is not None:
        assert same_ip(ev.client_ip, case.host), (ev.client_ip, case.host)
    verdicts = [det.verdict(ev, rid) for rid in sorted(fitting)]
    counted = [v for v in verdicts if v.verdict in ("counts", "fires")]
    assert counted, [f"{v.rule_id}: {v.reason}" for v in verdicts]


# --- false alarms ------------------------------------------------------------------------


@needs_corpus
def test_real_apache_logs_raise_no_pii_in_url(tmp_path: Path) -> None:
    assert CORPUS is not None
    path = CORPUS / "elastic-examples" / "apache_logs"
    text = path.read_text(errors="replace")
    assert re.search(r'"[^"]*@[^"]*"$', text, re.MULTILINE), (
        "the trap: e-mails in User-Agent strings"
    )
    rows = scan_findings(path, "combined", tmp_path / "a.db")
    assert [r for r in rows if r["category"] == "pii-in-url"] == []
    # What does fire on this real traffic has a reason (see benchmarks/false_alarms.py):
    # session ids of a third-party forum in referers, a few bots probing /admin.php.
    assert len(rows) <= 10, sorted(r["rule_id"] for r in rows)


NORMAL_ROUTES = [
    ("GET", "/api/v1/products?page={n}", 0.25),
    ("GET", "/api/v1/products/{id}", 0.25),
    ("GET", "/api/v1/cart", 0.1),
    ("POST", "/api/v1/cart/items", 0.06),
    ("GET", "/api/v1/users/me", 0.1),
    ("GET", "/static/app.{n}.js", 0.08),
    ("GET", "/health", 0.1),
    ("POST", "/api/v1/login", 0.04),
    ("POST", "/api/v1/orders", 0.02),
]
USER_AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15",
    "okhttp/4.12.0",
    "MyShopApp/3.2 (Android 14)",
]


def normal_traffic(hours: int = 2, seed: int = 20251010) -> list[str]:
    """Steady API traffic: 60 clients, ~1 request/s, ~2 % 404s, ~4 % of logins fail (401)."""
    rnd = random.Random(seed)
    start = datetime(2025, 10, 10, 8, 0, 0, tzinfo=UTC)
    clients = [(f"198.51.100.{i}", rnd.choice(USER_AGENTS), f"user{i}") for i in range(1, 61)]
    routes = [r[:2] for r in NORMAL_ROUTES]
    weights = [r[2] for r in NORMAL_ROUTES]
    lines = []
    t = start
    end = start + timedelta(hours=hours)
    while t < end:
        t += timedelta(seconds=rnd.expovariate(1.0))
        ip, ua, user = rnd.choice(clients)
        method, tmpl = rnd.choices(routes, weights)[0]
        target = tmpl.format(n=rnd.randrange(1, 6), id=rnd.randrange(1, 5000))
        status = 201 if method == "POST" else 200
        if tmpl.endswith("/login"):
            status = 401 if rnd.random() < 0.15 else 200
        elif tmpl.startswith("/api/v1/products/") and rnd.random() < 0.05:
            status = 404
        remote = user if tmpl.endswith(("/me", "/cart", "/orders")) else "-"
        stamp = t.strftime("%d/%b/%Y:%H:%M:%S +0000")
        lines.append(
            f'{ip} - {remote} [{stamp}] "{method} {target} HTTP/1.1" {status} '
            f'{rnd.randrange(200, 9000)} "https://shop.example/" "{ua}"'
        )
    return lines


def test_two_hours_of_normal_api_traffic_raise_nothing(tmp_path: Path) -> None:
    lines = normal_traffic()
    assert len(lines) > 6000
    statuses = [int(line.split('" ')[1].split()[0]) for line in lines]
    assert 20 < statuses.count(401) < 400 and 20 < statuses.count(404) < 400
    log = tmp_path / "access.log"
    log.write_text("\n".join(lines) + "\n")
    rows = scan_findings(log, "combined", tmp_path / "a.db")
    assert [(r["rule_id"], r["client_ip"], r["count"]) for r in rows] == []
