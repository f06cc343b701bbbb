"""Report data: the control policy, completeness, counts against the store, hostile text."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from auditor.model import CATEGORIES, Severity
from auditor.pipeline import Batch
from auditor.report import controls as ctl
from auditor.report.assess import (
    Coverage,
    Result,
    RuleInfo,
    category_outcome,
    evaluate,
    resolve_tag,
)
from auditor.report.data import (
    ReportData,
    ReportOptions,
    RulesetInfo,
    SourceSetting,
    bucket_minutes_for,
    build_report_data,
    pseudonym,
)
from auditor.report.periods import label, last_full_period, next_period, report_filename
from auditor.report.text import clean, markup, scrub
from auditor.store import Store
from auditor.store import report_queries as rq
from auditor.store.report_queries import FindingRow
from report_samples import DAY, PLANTED, demo_store, event, hit, read_gap, traffic, write

START_MS = int(DAY.timestamp() * 1000)
END_MS = START_MS + 86_400_000
RULES = (
    RuleInfo(
        "pii.pan-in-url",
        "Card number in URL",
        "pii-in-url",
        "critical",
        controls=("PCI-DSS-4.0.1:3.5.1",),
    ),
    RuleInfo("pii.email-in-url", "E-mail in URL", "pii-in-url", "medium"),
    RuleInfo("auth.failed-burst", "Failed logins", "failed-auth-burst", "high"),
    RuleInfo("net.plain-http", "Plain HTTP", "unencrypted-transport", "high"),
    RuleInfo(
        "probe.sad", "CVV in URL", "pii-in-url", "critical", controls=("PCI-DSS-4.0.1:3.3.1",)
    ),
)
SOURCES = (
    SourceSetting("api", "/var/log/nginx/access.log", "combined"),
    SourceSetting("edge", "/var/log/alb/edge.log", "aws-alb"),
)


def _rows(store: Store, start_ms: int = START_MS, end_ms: int = END_MS) -> rq.ReportRows:
    return rq.fetch(store.conn, start_ms, end_ms, bucket_minutes=60, gap_minutes=60, top_n=3)


def _data(store: Store, **kw: object) -> ReportData:
    opts = ReportOptions(organisation="Org", sources=SOURCES, **kw)  # type: ignore[arg-type]
    return build_report_data(
        _rows(store),
        generated_at=DAY + timedelta(days=1, hours=6),
        options=opts,
        ruleset=RulesetInfo("test", "ab" * 32, RULES),
    )


@pytest.fixture
def demo(tmp_path: Path) -> Store:
    return demo_store(tmp_path / "demo.db")


def _finding(
    category: str, severity: int = 3, controls: tuple[str, ...] = (), pii: str | None = None
) -> FindingRow:
    return FindingRow(
        "f1",
        "r1",
        "t",
        category,
        severity,
        "192.0.2.1",
        "api",
        0,
        1,
        5,
        pii,
        "e",
        controls,
        0,
        None,
        "open",
        0,
    )


# --- catalogue -----------------------------------------------------------------------------


def test_catalogue_ids_unique_and_every_category_is_evidence_somewhere() -> None:
    ids = [c.id for c in ctl.CONTROLS]
    assert len(ids) == len(set(ids))
    used = {k.split(":")[0] for c in ctl.CONTROLS for k in (*c.fail_on, *c.review_on)}
    assert set(CATEGORIES) <= used
    assert len(ctl.catalogue_hash()) == 64


def test_resolve_tag_exact_alias_prefix_unknown() -> None:
    assert resolve_tag("PCI-DSS-4.0.1:10.2.1.4").ref == "10.2.1.4"  # type: ignore[union-attr]
    assert resolve_tag("PCI-DSS-3.2.1:10.2.4").ref == "10.2.1.4"  # type: ignore[union-attr]
    assert resolve_tag("GDPR:Art.32(1)(b)").ref == "Art.32"  # type: ignore[union-attr]
    assert resolve_tag("OWASP-API-2023:API1").ref == "API1"  # type: ignore[union-attr]
    assert resolve_tag("OWASP-API-2023:API10").ref == "API10"  # type: ignore[union-attr]
    assert resolve_tag("ISO-27001:A.8.16") is None
    assert resolve_tag("PCI-DSS-4.0.1:10.2.14") is None  # not a boundary


# --- the result policy ---------------------------------------------------------------------

FULL = ctl.CONTROL_BY_ID["PCI-DSS-4.0.1:3.5.1"]
PARTIAL = ctl.CONTROL_BY_ID["OWASP-API-2023:API1"]
NONE = ctl.CONTROL_BY_ID["PCI-DSS-4.0.1:11.6.1"]
SCHEME = ctl.CONTROL_BY_ID["PCI-DSS-4.0.1:4.2.1"]
GOOD = Coverage(requests=100)


def test_not_assessable_is_never_pass() -> None:
    assert evaluate(NONE, [], True, GOOD)[0] is Result.NA
    assert evaluate(NONE, [(_finding("scanner-probe"), "review")], True, GOOD)[0] is Result.REVIEW


def test_fail_review_pass() -> None:
    pan = _finding("pii-in-url", pii="pan")
    assert evaluate(FULL, [(pan, "fail")], True, GOOD)[0] is Result.FAIL
    assert evaluate(PARTIAL, [(_finding("enumeration"), "review")], True, GOOD)[0] is Result.REVIEW
    assert evaluate(PARTIAL, [], True, GOOD)[0] is Result.REVIEW
    assert evaluate(FULL, [], True, GOOD)[0] is Result.PASS


def test_pass_needs_a_rule_data_and_no_gaps() -> None:
    assert evaluate(FULL, [], False, GOOD)[0] is Result.REVIEW
    assert evaluate(FULL, [], True, Coverage(requests=0))[0] is Result.REVIEW
    assert evaluate(FULL, [], True, Coverage(requests=5, gaps=1))[0] is Result.REVIEW


def test_scheme_blind_format_makes_transport_not_assessable() -> None:
    blind = Coverage(requests=5, scheme_blind=("api (combined)",))
    assert evaluate(SCHEME, [], True, blind)[0] is Result.NA
    assert evaluate(SCHEME, [], True, GOOD)[0] is Result.PASS


def test_category_outcomes() -> None:
    pan = _finding("pii-in-url", pii="pan")
    email = _finding("pii-in-url", pii="email")
    assert category_outcome(FULL, pan.category, pan.pii_type) == "fail"
    assert category_outcome(FULL, email.category, email.pii_type) is None
    art33 = ctl.CONTROL_BY_ID["GDPR:Art.33"]
    assert category_outcome(art33, "scanner-probe", None, int(Severity.HIGH)) == "review"
    assert category_outcome(art33, "scanner-probe", None, int(Severity.LOW)) is None


# --- built from a store --------------------------------------------------------------------


def test_counts_match_the_store(demo: Store) -> None:
    d = _data(demo)
    n_findings = demo.conn.execute(
        "SELECT count(*) FROM findings WHERE last_seen_ms >= ? AND first_seen_ms < ?",
        (START_MS, END_MS),
    ).fetchone()[0]
    requests = demo.conn.execute(
        "SELECT sum(requests) FROM minute_stats WHERE minute >= ? AND minute < ?",
        (START_MS // 60000, END_MS // 60000),
    ).fetchone()[0]
    assert d.findings_total == n_findings == 6
    assert d.activity.requests_total == requests == sum(d.activity.requests)
    assert sum(d.activity.new_findings) == 6
    assert dict(d.exposure_types) == {"email": 5, "pan": 3}
    assert {s.severity: s.findings for s in d.severities} == {
        "critical": 1,
        "high": 3,
        "medium": 2,
        "low": 0,
    }
    assert d.trend[3].previous == 1 and d.trend[3].current == 6
    assert d.activity.clients_total == 4 and len(d.activity.top_clients) == 3
    assert d.activity.other_clients == 1 and d.activity.other_requests == 6


def test_control_results_from_store(demo: Store) -> None:
    d = _data(demo)
    by = {c.id: c for c in d.controls}
    assert by["PCI-DSS-4.0.1:3.5.1"].result is Result.FAIL
    assert by["PCI-DSS-4.0.1:3.5.1"].rules == ("pii.pan-in-url",)
    assert by["PCI-DSS-4.0.1:4.2.1"].result is Result.FAIL  # the ALB edge logs the scheme
    assert by["PCI-DSS-4.0.1:10.2.1.4"].result is Result.REVIEW
    assert by["PCI-DSS-4.0.1:10.2.1.4"].prev_findings == 1
    assert by["PCI-DSS-4.0.1:11.6.1"].result is Result.NA
    assert by["PCI-DSS-4.0.1:3.3.1"].result is Result.REVIEW  # tested, but the data has a gap
    assert by["ISO-27001:A.8.16"].framework == "other"
    assert all(c.result is not Result.PASS for c in d.controls if c.assess == "none")


def test_completeness_finds_the_gap(demo: Store) -> None:
    c = _data(demo).completeness
    assert not c.complete and c.gap_count == 1
    g = c.gaps[0]
    assert (g.source, g.start, g.minutes) == ("api", DAY + timedelta(hours=3), 90)
    assert c.statement.startswith("Gaps: 1 stretch")
    api = next(s for s in c.sources if s.name == "api")
    assert not api.scheme_visible
    assert next(s for s in c.sources if s.name == "edge").scheme_visible


def test_complete_data_passes_full_controls(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "x.db")
    write(store, traffic(DAY, every_min=5))
    opts = ReportOptions(sources=(SourceSetting("api", scheme="https"),))
    d = build_report_data(
        _rows(store),
        generated_at=DAY + timedelta(days=1),
        options=opts,
        ruleset=RulesetInfo("t", "", RULES),
    )
    assert d.completeness.statement.startswith("No gaps")
    by = {c.id: c.result for c in d.controls}
    assert by["PCI-DSS-4.0.1:3.5.1"] is Result.PASS
    assert by["PCI-DSS-4.0.1:4.2.1"] is Result.PASS  # the source declares https
    assert by["GDPR:Art.5(1)(c)"] is Result.PASS
    assert d.findings_total == 0 and d.verdict.endswith("no findings in 288 requests.")


def test_read_gaps_of_the_period_are_listed_and_the_data_is_not_complete(
    tmp_path: Path,
) -> None:
    """Data every 5 minutes, so no stretch without data; but a file was truncated before
    its end was read (a real tailer found it): the report lists that read gap, says so
    first in its statement, and does not pass controls that need complete data."""
    store = Store.open(tmp_path / "x.db")
    write(store, traffic(DAY, every_min=5))
    inside = read_gap(tmp_path / "access.log", "api", DAY + timedelta(hours=10))
    before = read_gap(tmp_path / "old.log", "api", DAY - timedelta(minutes=1))
    store.write(Batch(read_gaps=[inside, before]))
    rows = _rows(store)
    assert [(g.source, g.detail) for g in rows.read_gaps] == [("api", inside.describe())]
    d = build_report_data(
        rows,
        generated_at=DAY + timedelta(days=1),
        options=ReportOptions(sources=(SourceSetting("api", scheme="https"),)),
        ruleset=RulesetInfo("t", "", RULES),
    )
    c = d.completeness
    assert (c.complete, c.gap_count, c.read_gap_count) == (False, 0, 1)
    ((at, source, detail),) = [(g.at, g.source, g.detail) for g in c.read_gaps]
    assert (at, source) == (DAY + timedelta(hours=10), "api")
    assert detail.startswith(f"{tmp_path / 'access.log'} was truncated (")
    assert "after offset 15 was not read" in detail
    assert c.statement == (
        "Read gaps: 1 time(s) log data was lost before it could be read (api, found "
        '2026-11-20T10:00Z); each is listed under "Log data not read" in section 1. '
        "No stretch without data: every source delivered data at least every 60 minutes "
        "of the period."
    )
    assert next(s for s in c.sources if s.name == "api").read_gaps == 1
    pan = next(x for x in d.controls if x.id == "PCI-DSS-4.0.1:3.5.1")
    assert pan.result is Result.REVIEW and "lost before it was read" in pan.reason
    logging_ok = next(x for x in d.controls if x.id == "PCI-DSS-4.0.1:10.7.2")
    assert "1 read gap(s)" in logging_ok.observed


def test_edge_gaps_and_silent_configured_source(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "x.db")
    write(store, [e for e in traffic(DAY, every_min=10) if e.timestamp.hour >= 2])
    opts = ReportOptions(sources=(SourceSetting("api"), SourceSetting("quiet")))
    d = build_report_data(_rows(store), generated_at=DAY, options=opts, ruleset=RulesetInfo())
    gaps = {(g.source, g.minutes) for g in d.completeness.gaps}
    assert ("api", 120) in gaps and ("quiet", 1440) in gaps


def test_pseudonymised_clients_hide_addresses(demo: Store) -> None:
    d = _data(demo, pseudonym_key=b"k" * 32)
    clients = [c.client for c in d.activity.top_clients] + [f.client for f in d.findings]
    assert all(c.startswith("anon-") or c == "-" for c in clients)
    assert pseudonym(b"k" * 32, "198.51.100.7") in clients
    assert "198.51.100.7" not in repr(d)


def test_findings_beyond_the_detail_cap_are_tallied(demo: Store) -> None:
    d = _data(demo, max_detail=2, max_listed=1)
    assert len(d.findings) == 2 and len(d.listed) == 1
    assert sum(t.findings for t in d.omitted) == 3


def test_no_planted_secret_in_report_data(demo: Store) -> None:
    text = repr(_data(demo))
    for secret in PLANTED:
        assert secret not in text


def test_report_queries_never_read_events(demo: Store) -> None:
    def deny_events(
        action: int, arg1: str | None, arg2: str | None, db: str | None, trig: str | None
    ) -> int:
        if action == sqlite3.SQLITE_READ and arg1 == "event_blocks":
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    demo.conn.set_authorizer(deny_events)
    with pytest.raises(sqlite3.DatabaseError):
        demo.conn.execute("SELECT count(*) FROM event_blocks").fetchone()
    rows = _rows(demo)  # would raise if any report query touched events
    assert rows.findings


def test_previous_period_events_and_hits(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "x.db")
    write(
        store,
        [event(DAY - timedelta(hours=1))],
        [hit(DAY - timedelta(hours=1), "r", "enumeration", Severity.LOW)],
    )
    d = build_report_data(
        _rows(store), generated_at=DAY, options=ReportOptions(), ruleset=RulesetInfo()
    )
    assert d.findings_total == 0 and d.trend[0].previous == 1 and d.trend[3].previous == 1


# --- small pure helpers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours", "minutes"),
    [(6, 15), (24, 60), (48, 180), (24 * 7, 360), (24 * 31, 1440), (24 * 400, 10080)],
)
def test_bucket_minutes(hours: int, minutes: int) -> None:
    assert bucket_minutes_for(DAY, DAY + timedelta(hours=hours)) == minutes


def test_periods() -> None:
    t = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)  # a Friday
    assert last_full_period("day", t) == (
        datetime(2026, 11, 19, tzinfo=UTC),
        datetime(2026, 11, 20, tzinfo=UTC),
    )
    assert last_full_period("week", t) == (
        datetime(2026, 11, 9, tzinfo=UTC),
        datetime(2026, 11, 16, tzinfo=UTC),
    )
    assert last_full_period("month", t) == (
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2026, 11, 1, tzinfo=UTC),
    )
    jan = last_full_period("month", datetime(2027, 1, 1, tzinfo=UTC))
    assert jan == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert next_period("month", *jan) == (
        datetime(2027, 1, 1, tzinfo=UTC),
        datetime(2027, 2, 1, tzinfo=UTC),
    )
    assert label("week", *last_full_period("week", t)) == "2026-W46"
    assert label("month", *last_full_period("month", t)) == "2026-10"
    assert (
        report_filename("daily ../x", "day", *last_full_period("day", t))
        == "log-auditor-daily-x-2026-11-19.pdf"
    )
    assert (
        report_filename(None, None, t, t + timedelta(hours=2))
        == "log-auditor-report-20261120T0600Z-20261120T0800Z.pdf"
    )


def test_scrub_masks_secrets_and_keeps_masked_values() -> None:
    s = scrub(
        "card 4111 1111 1111 1111 mail jane.doe@example.org ssn 123-45-6789 key AKIAIOSFODNN7EXAMPLE"
    )
    assert "4111 1111 1111 1111" not in s and "411111******1111" in s
    assert "j***@example.org" in s and "***-**-6789" in s and "[aws-access-key]" in s
    assert scrub("411111******1111 j***@example.org") == "411111******1111 j***@example.org"
    assert scrub("order 1234567890123") == "order 1234567890123"  # not Luhn-valid: kept


def test_markup_escapes_and_cleans() -> None:
    m = markup('<img src="/etc/passwd"/> & <font>\x00\x1b\u65e5', can_draw=lambda ch: ord(ch) < 128)
    assert "<" not in m.replace("&lt;", "") and "&amp;" in m
    assert "\x00" not in m and "\x1b" not in m and m.endswith("?")
    assert len(clean("x" * 5000, 100)) == 100
    # Masking happens before truncation: no half card number survives a cut.
    assert "411111111111" not in clean("a" * 90 + "4111111111111111", 100)


def test_clients_from_a_day_rollup_match_the_hourly_table(demo: Store) -> None:
    """A store that also keeps client_days gives the same top clients, edges included."""
    start = START_MS - 5 * 3_600_000  # partial days at both ends
    end = END_MS + 7 * 3_600_000
    with_days = rq.clients(demo.conn, start, end, 3)  # the store keeps client_days
    demo.conn.execute("ALTER TABLE client_days RENAME TO client_days_off")
    hourly = rq.clients(demo.conn, start, end, 3)
    demo.conn.execute("ALTER TABLE client_days_off RENAME TO client_days")
    assert with_days == hourly
    assert rq.clients(demo.conn, START_MS, END_MS, 3) == rq.clients(demo.conn, START_MS, END_MS, 3)
    in_range = demo.conn.execute(
        "SELECT sum(requests) FROM client_hours_all WHERE hour >= ? AND hour < ?",
        (start // 3_600_000, end // 3_600_000),
    ).fetchone()[0]
    assert hourly[1] == 4 and hourly[2] == in_range == 2280
