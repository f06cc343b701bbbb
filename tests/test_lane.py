"""Rules counted from columns (``auditor.detectors.lane``): which rules qualify, and that a
rule gives the same hits in the lane, from a worker's columns, as through the gates."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from auditor.detect import Detector
from auditor.detectors.fields import EventView
from auditor.detectors.lane import COLUMN_FIELDS, Row, field_values
from auditor.model import Event, Hit
from auditor.packedevents import pack
from auditor.pipeline import epoch_ms
from auditor.rules import RuleSet, bundled_rules_dir, load_rulesets
from factories import make_event

BUNDLED = load_rulesets([bundled_rules_dir()], {})


def lane_rules(det: Detector) -> set[str]:
    return set(det.lane_rules)


def test_bundled_not_found_rules_leave_the_gates_for_the_lane() -> None:
    det = Detector(BUNDLED)
    lane = lane_rules(det)
    for rule in (
        "abuse.random-uri-flood",
        "probe.scanner-burst",
        "probe.scanner-sustained",
        "probe.known-app-paths",  # one clause gated by a path prefix: it tests the status too
        "abuse.error-burst",
    ):
        assert rule in lane
    # Gated elsewhere or reading what no column holds: an eager predicate (auth_failure),
    # the log's format (abuse.rate-limited's nginx-error clause), no status test at all.
    for rule in (
        "admin.probing",
        "auth.bruteforce-burst",
        "abuse.rate-limited",
        "probe.sensitive-file",
    ):
        assert rule not in lane
    # So a plain 404 is no longer a suspect the per-event loop must build and look at.
    assert 404 not in det._plan.status
    assert {"status", "path", "client_ip"} <= set(det.columns)


HEADER = """
[ruleset]
name = "lane-test"
description = "rules for the lane tests"

[[predicate]]
name = "is_asset"
description = "lazy: only an unless names it"
where = { path = { suffix = [".png", ".css"] } }

[[predicate]]
name = "gated_pred"
description = "eager: a rule's clause names it"
where = { method = "POST" }
"""


def rule(rule_id: str, body: str) -> str:
    """A lane-test rule: ``body`` (its conditions) under the keys every rule needs."""
    return f"""
[[rule]]
id = "{rule_id}"
title = "{rule_id}"
severity = "low"
category = "scanner-probe"
description = "d"
remediation = "r"
controls = ["OWASP-API-2023:API9"]
{body}
"""


RULES = HEADER + "".join(
    [
        rule(
            "t.notfound-burst",
            """
where = { status = { in = [404, 410] } }
unless = [ { is_asset = true }, { raw_path = { eq = "/" } } ]
escalate = [ { when = { user_agent = { contains = ["nuclei"] } }, severity = "high" } ]
threshold = { distinct = 3, of = "path", within = "10s", by = "client_ip" }
""",
        ),
        rule(
            "t.ua-allowed",
            """
where = { status = 404 }
allow = { user_agents = ["^monitor"] }
threshold = { count = 3, within = "10s", by = "client_ip" }
""",
        ),
        rule(
            "t.allow-listed",
            """
where = { status = { in = [404, 410] }, path = { prefix = ["/b", "/c"] } }
allow = { cidrs = ["198.51.100.1/32"], paths = ["^/c/1"] }
key = ["client_ip", "path"]
""",
        ),
        rule(
            "t.two-keys",
            """
where = { status_class = 4, user_name = { exists = false } }
threshold = { count = 2, within = "30s", by = ["client_ip", "route"] }
""",
        ),
        rule(
            "t.eager-unless",
            """
where = { status = 404 }
unless = [ { gated_pred = true } ]
threshold = { count = 3, within = "10s", by = "client_ip" }
""",
        ),
        rule(
            "t.uses-pred",
            """
where = { gated_pred = true, path = { prefix = ["/login"] } }
""",
        ),
        rule(
            "t.half-status",
            """
any = [ { status = 410 }, { path = { prefix = ["/gone"] } } ]
""",
        ),
    ]
)


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    d: Path = tmp_path_factory.mktemp("rules")
    (d / "lane.toml").write_text(RULES)
    return load_rulesets([d], {}, context=[])


def test_a_rule_qualifies_only_when_columns_decide_it(ruleset: RuleSet) -> None:
    # Escalation may read any field (a hit builds its event); an allow-list on the user
    # agent, an eager predicate, or a clause with no status test keep a rule at the gates.
    assert lane_rules(Detector(ruleset)) == {"t.notfound-burst", "t.allow-listed", "t.two-keys"}


def traffic() -> list[Event]:
    out: list[Event] = []
    t0 = make_event().timestamp
    for n in range(400):
        t = t0 + timedelta(milliseconds=300 * n)
        ip = f"198.51.100.{n % 5}"
        path = ["/a", "/b/1", f"/c/{n}", "/x.png", "/", "/gone/1", "/login"][n % 7]
        status = [404, 404, 410, 404, 404, 200, 404][(n // 3) % 7]
        ua = ["curl/8", "Nuclei v3", "monitor/1"][n % 3]
        method = "POST" if n % 5 == 0 else "GET"
        out.append(
            make_event(
                timestamp=t,
                client_ip=ip,
                path=path,
                route=path,
                status=status,
                user_agent=ua,
                method=method,
                offset=n * 100,
            )
        )
    return out


def hit_tuple(h: Hit) -> tuple[Any, ...]:
    return (h.rule_id, h.key, h.timestamp, h.first_seen, h.count, str(h.severity), h.evidence)


@pytest.mark.parametrize("size", [1, 7, 64, 400])
def test_the_lane_on_a_workers_columns_gives_the_hits_of_built_events(
    ruleset: RuleSet, size: int
) -> None:
    events = traffic()
    plain, packed, sieving = Detector(ruleset), Detector(ruleset), Detector(ruleset)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Detector, "use_lane", False)
        gated = Detector(ruleset)  # every rule through the gates and the per-event loop
    assert not gated.lane_rules
    reference: list[tuple[Any, ...]] = []
    want: list[tuple[Any, ...]] = []
    got: list[tuple[Any, ...]] = []
    for lo in range(0, len(events), size):
        batch = events[lo : lo + size]
        want.extend(hit_tuple(h) for h in plain.observe_many(batch))
        reference.extend(hit_tuple(h) for h in gated.observe_many(batch))
        marks = sieving.sieve(batch, "t")
        rows = pack(batch, epoch_ms(batch), sieving.columns).events()
        got.extend(hit_tuple(h) for h in packed.observe_many(rows, marks))
    assert got == want
    # The same hits as the gates give, each event's in the same order but for the lane's
    # coming after the per-event loop's.
    assert sorted(want) == sorted(reference)
    fired = {h[0] for h in want}
    assert {
        "t.notfound-burst",
        "t.allow-listed",
        "t.two-keys",
        "t.ua-allowed",
        "t.eager-unless",
        "t.half-status",
    } <= fired
    # The allow-list, read from the columns, let neither its address nor its path count.
    allowed = [h for h in want if h[0] == "t.allow-listed"]
    assert allowed
    assert not any(h[1].startswith("198.51.100.1|") for h in allowed)
    assert not any(h[6].split()[1].startswith("/c/1") for h in allowed)
    # The escalation read the user agent from the event a hit built.
    assert {h[5] for h in want if h[0] == "t.notfound-burst"} >= {"high"}


def test_a_row_reads_what_it_does_not_hold_from_the_event() -> None:
    events = [make_event(path="/p", user_agent="ua/1"), make_event(path="/q", user_agent="ua/2")]
    row = Row(events, 1)
    row.path = "/from-column"
    assert row.path == "/from-column"  # its own slot, not the event's
    assert row.user_agent == "ua/2"
    assert row.timestamp == events[1].timestamp


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"user_name": "-", "status": None, "path": "//a/./b%2541"},
        {"user_name": "", "client_ip": None, "path": "/x%20y", "route": "/x"},
        {"user_name": "bob", "status": 503, "path": "/%252e%252e/etc"},
    ],
)
def test_a_lane_column_holds_what_the_view_gives(kw: dict[str, Any]) -> None:
    ev = make_event(**kw)
    view = EventView(ev, 0.0)
    for field, attr in COLUMN_FIELDS.items():
        assert field_values(field, [getattr(ev, attr)]) == [view.get(field)], field
