"""Folded hits make the findings that separate hits make.

A key past its threshold (a route over its volume limit, a client walking object ids)
makes a count-1 hit per further request; detectors fold a run of them into one hit
(``auditor.detectors.base.Folds``). The store folds hits into findings the same way, so the
findings, their counts, times, severities and evidence must not change, whatever the
traffic does: late lines, a pause longer than the episode gap, a walk whose severity rises
midway, several scans of one file."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from click.testing import CliRunner

from auditor.cli import _register, cli
from auditor.detectors.base import Folds

_register()

START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
CONFIG = """
[rules.override."abuse.enumeration".params]
episode_gap = "2m"

[rules.override."abuse.route-volume-spike".params]
episode_gap = "30s"
"""


def _line(ip: str, t: datetime, target: str, status: int) -> str:
    stamp = t.strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'{ip} - - [{stamp}] "GET {target} HTTP/1.1" {status} 512 "-" "curl/8.4.0"'


def traffic(seed: int) -> list[str]:
    """Busy routes (over the volume limits while the baseline learns, failing for a while),
    a client walking order ids whose answers turn from half to all served (its severity
    rises midway), a scanner, late lines, a pause of 150 s and one of three hours."""
    rnd = random.Random(seed)
    out: list[tuple[datetime, str]] = []
    t = START
    walker = 1000
    for n in range(12000):
        t += timedelta(milliseconds=rnd.choice((5, 7, 9)))
        if n == 5000:
            t += timedelta(seconds=150)  # past the gaps of 2 minutes, within the walk's window
        if n == 9000:
            t += timedelta(hours=3)  # longer than any episode gap
        ip = f"198.51.100.{rnd.randrange(1, 60)}"
        path = rnd.choice(["/api/v1/items", "/search?q=x", "/", "/api/v1/items/7"])
        status = rnd.choice((200, 200, 200, 404) if not 2000 <= n < 2600 else (200, 502, 503))
        if n % 3 == 0:  # the walker: sequential ids, half served, then all (severity rises)
            walker += 1
            status = 500 if n < 3000 and walker % 2 else 200 if n < 9000 else 404
            ip, path = "203.0.113.9", f"/api/v1/orders/{walker}"
        elif n % 5 == 1 and 1000 <= n < 8000:  # a scanner: missing pages, sensitive files
            ip, status = "192.0.2.50", 404
            path = rnd.choice(["/.env", "/.git/config", f"/old/page{n}.php", f"/x{n}"])
        stamp = t - timedelta(seconds=2) if n % 97 == 0 else t  # a late line now and then
        out.append((stamp, _line(ip, stamp, path, status)))
    return [line for _, line in out]


def run(*args: str) -> str:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def scan_findings(
    tmp: Path, monkeypatch: pytest.MonkeyPatch, fold: bool, pieces: int
) -> tuple[list[dict[str, Any]], int]:
    monkeypatch.setattr(Folds, "enabled", fold)
    monkeypatch.setenv("LOG_AUDITOR_PARALLEL_MIN_BYTES", str(1 << 60))  # this process
    cfg = tmp / "c.toml"
    cfg.write_text(CONFIG)
    where = tmp / f"fold-{fold}-{pieces}"
    where.mkdir()
    db, log = where / "a.db", where / "access.log"  # the source is named after the file
    lines = traffic(7)
    hits = 0
    step = -(-len(lines) // pieces)
    for lo in range(0, len(lines), step):  # the file grows between scans
        with log.open("a") as f:
            f.write("\n".join(lines[lo : lo + step]) + "\n")
        out = run("scan", "--config", str(cfg), "--db", str(db), "--json", "--quiet", str(log))
        hits += orjson.loads(out)["hits"]
    rows = [orjson.loads(x) for x in run("findings", "--db", str(db), "--json").splitlines()]
    for row in rows:
        for k in [k for k in row if k.startswith("detected")]:
            del row[k]
    return sorted(rows, key=lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS)), hits


@pytest.mark.parametrize("pieces", [1, 3])
def test_folded_hits_make_the_same_findings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pieces: int
) -> None:
    apart, hits_apart = scan_findings(tmp_path, monkeypatch, False, pieces)
    sizes: list[int] = []
    emit = Folds._emit

    def noted(self: Folds, run: list[Any], out: Any) -> None:
        sizes.append(run[5])
        emit(self, run, out)

    monkeypatch.setattr(Folds, "_emit", noted)
    folded, hits_folded = scan_findings(tmp_path, monkeypatch, True, pieces)
    assert max(sizes) > 100 and len(sizes) < hits_folded / 10  # folds did fold
    rules = {r["rule_id"] for r in folded}
    assert {
        "abuse.enumeration",  # a detector
        "abuse.route-volume-spike",  # another
        "abuse.error-rate",  # another
        "probe.sensitive-file",  # a rule of its own, per request
        "probe.scanner-sustained",  # a threshold rule over a window
    } <= rules, rules
    walks = [r for r in folded if r["rule_id"] == "abuse.enumeration"]
    assert len(walks) >= 3  # each pause ends an episode
    assert {r["severity"] for r in walks} == {"medium", "high"} or any(
        r["severity"] == "high" and "50% 2xx" in r["evidence"] for r in walks
    )
    assert folded == apart
    assert hits_folded == hits_apart  # hits counted as the requests they stand for


def test_a_fold_stands_for_its_requests() -> None:
    """A run folds while in time order with one severity and less than the episode gap
    apart; anything else starts a new run (emitting the one before)."""
    from auditor.detectors.base import Hits
    from auditor.model import Severity
    from auditor.rules import load_rulesets
    from factories import make_event

    ruleset = load_rulesets(sorted((Path(__file__).parents[1] / "rulesets").glob("*.toml")), {})
    rule = next(r for r in ruleset.rules if r.id == "abuse.enumeration")
    gap = rule.episode_gap_s
    times = [0.0, 1.0, 2.0, 1.5, 1.6, 1.6 + gap, 1.7 + gap, 1.8 + gap]
    sev = [Severity.MEDIUM] * 7 + [Severity.HIGH]
    events = [
        make_event(timestamp=datetime.fromtimestamp(1.8e9 + t, tz=UTC), path=f"/o/{i}")
        for i, t in enumerate(times)
    ]
    ts = [1.8e9 + t for t in times]
    folds, out = Folds(events), cast(Hits, [])
    for i, t in enumerate(ts):
        if not folds.extend(rule, "k", i, t, sev[i]):
            folds.start(rule, "k", i, t, sev[i], None, out)
    folds.flush(out)
    runs = [(i, h.count, h.emits, h.first_seen, h.timestamp) for i, [h] in out]
    at = [e.timestamp for e in events]
    assert runs == [
        (0, 3, 3, at[0], at[2]),  # in order
        (3, 2, 2, at[3], at[4]),  # a late one starts anew
        (5, 2, 2, at[5], at[6]),  # a gap apart
        (7, 1, 1, at[7], at[7]),  # its severity rose
    ]
