"""The PDF read back: sections, period and counts against the store; no secret; hostile text."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pypdf
import pytest
from PIL import Image

from auditor.config import Config, ReportConfig, RulesConfig, SourceConfig
from auditor.model import Severity
from auditor.pipeline import Batch
from auditor.report import layout, style
from auditor.report.data import ReportOptions, RulesetInfo, build_report_data
from auditor.report.pdf import render_pdf
from auditor.report.produce import produce_report
from auditor.store import Store
from auditor.store import report_queries as rq
from report_samples import (
    DAY,
    HOSTILE,
    PLANTED,
    RAW_EMAIL,
    demo_store,
    empty_store,
    hit,
    read_gap,
    write,
)

SECTIONS = (
    "API access-log compliance report",
    "Verdict",
    "1 Scope and data completeness",
    "2 Summary",
    "3 Control matrix",
    "PCI DSS v4.0.1",
    "OWASP API Security Top 10 2023",
    "GDPR (EU) 2016/679",
    "4 Findings in detail",
    "5 Personal data and secrets in URLs",
    "6 Activity",
    "Appendix A Method and limitations",
    "Appendix B Review and sign-off",
    "Appendix C Integrity",
)


def _config(tmp_path: Path, **report: Any) -> Config:
    return Config(
        rules=RulesConfig(bundled=False),  # independent of the shipped rule files
        report=ReportConfig(
            output_dir=tmp_path / "reports", organisation="Example Payments Ltd", **report
        ),
        sources=(
            SourceConfig("api", "/var/log/nginx/access.log", "combined"),
            SourceConfig("edge", "/var/log/alb/edge.log", "aws-alb"),
        ),
    )


def _text(pdf: bytes) -> tuple[list[str], pypdf.PdfReader]:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    pages = [re.sub(r"[ \t]+", " ", p.extract_text() or "") for p in reader.pages]
    return pages, reader


def _streams(reader: pypdf.PdfReader) -> Iterator[bytes]:
    for page in reader.pages:
        contents = page.get_contents()
        if contents is not None:
            yield contents.get_data()


@pytest.fixture(scope="module")
def demo_pdf(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Store, Path]:
    tmp_path = tmp_path_factory.mktemp("demo")
    db = tmp_path / "demo.db"
    store = demo_store(db)
    produced = produce_report(
        _config(tmp_path), db, DAY, DAY + timedelta(days=1), job="daily", kind="day"
    )
    return produced.path.read_bytes(), store, produced.path


def test_sections_period_and_counts_match_the_store(demo_pdf: tuple[bytes, Store, Path]) -> None:
    pdf, store, path = demo_pdf
    pages, _ = _text(pdf)
    text = "\n".join(pages)
    flat = re.sub(r"\s+", " ", text)
    for title in SECTIONS:
        assert title in flat, title
    assert "2026-11-20T00:00:00Z to 2026-11-21T00:00:00Z" in flat
    start_ms = int(DAY.timestamp() * 1000)
    n = store.conn.execute(
        "SELECT count(*) FROM findings WHERE last_seen_ms >= ? AND first_seen_ms < ?",
        (start_ms, start_ms + 86_400_000),
    ).fetchone()[0]
    requests = store.conn.execute(
        "SELECT sum(requests) FROM minute_stats WHERE minute >= ? AND minute < ?",
        (start_ms // 60000, start_ms // 60000 + 1440),
    ).fetchone()[0]
    assert f"{n} finding(s) (1 critical, 3 high, 2 medium) in {requests:,} requests" in flat
    assert "Gaps: 1 stretch(es) of more than 60 minutes without data: api 2026-11-20T03:00Z" in flat
    rid = re.search(r"Report ID (LA-20261120-[0-9A-F]{8})", flat)
    assert rid is not None
    for i, page in enumerate(pages, start=1):
        assert f"Page {i} of {len(pages)}" in page
        assert f"Report {rid.group(1)}" in page
    assert path.name == "log-auditor-daily-2026-11-20.pdf"


def test_no_planted_secret_in_text_bytes_or_streams(demo_pdf: tuple[bytes, Store, Path]) -> None:
    pdf, _, _ = demo_pdf
    pages, reader = _text(pdf)
    text = "\n".join(pages)
    streams = b"".join(_streams(reader))
    for secret in PLANTED:
        assert secret not in text
        assert secret.encode() not in pdf
        assert secret.encode() not in streams
    assert "411111******1111" in text  # the masked form is what the reader sees


def test_hostile_markup_prints_as_text_and_loads_nothing(
    demo_pdf: tuple[bytes, Store, Path],
) -> None:
    pdf, _, _ = demo_pdf
    pages, _ = _text(pdf)
    flat = re.sub(r"\s+", "", "".join(pages))
    assert re.sub(r"\s+", "", HOSTILE.replace("&amp;", "&") + "amp;") in flat
    assert b"/Subtype /Image" not in pdf  # no image was loaded
    assert b"/URI" not in pdf and b"/Launch" not in pdf  # no link was made


def test_pdf_is_small(demo_pdf: tuple[bytes, Store, Path]) -> None:
    assert len(demo_pdf[0]) < 300_000


def test_no_findings_is_still_a_full_report(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    empty_store(db).close()
    p = produce_report(_config(tmp_path), db, DAY, DAY + timedelta(days=1))
    flat = re.sub(r"\s+", " ", " ".join(_text(p.path.read_bytes())[0]))
    for title in SECTIONS:
        assert title in flat, title
    assert "No findings in the period." in flat
    assert "No data: no source delivered a request" in flat
    assert "no findings in 0 requests" in flat


def test_a_read_gap_is_stated_and_listed_with_its_file_and_offset(tmp_path: Path) -> None:
    """The cover's statement names it first; section 1 lists it. A path is printed, but
    what looks like a secret in it is masked as everywhere else."""
    db = tmp_path / "demo.db"
    store = demo_store(db)
    tenant = tmp_path / RAW_EMAIL
    tenant.mkdir()
    gap = read_gap(tenant / "access.log", "api", DAY + timedelta(hours=7, minutes=30))
    store.write(Batch(read_gaps=[gap]))
    store.close()
    p = produce_report(_config(tmp_path), db, DAY, DAY + timedelta(days=1))
    pdf = p.path.read_bytes()
    pages, _ = _text(pdf)
    flat = re.sub(r"\s+", " ", " ".join(pages))
    assert "Read gaps: 1 time(s) log data was lost before it could be read" in flat
    assert "(api, found 2026-11-20T07:30Z)" in pages[0].replace("\n", " ")
    assert "Log data not read (read gaps)" in flat
    assert "2026-11-20 07:30Z" in flat and "access.log was truncated" in flat
    assert "after offset 15 was not read" in flat
    assert "j***@example.org" in flat
    assert RAW_EMAIL not in flat and RAW_EMAIL.encode() not in pdf


def test_letter_paper_logo_and_pseudonyms(tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    Image.new("RGB", (120, 40), (20, 60, 120)).save(logo)
    db = tmp_path / "demo.db"
    demo_store(db).close()
    cfg = _config(tmp_path, paper="Letter", logo=logo, pseudonymise=True)
    p = produce_report(cfg, db, DAY, DAY + timedelta(days=1))
    pdf = p.path.read_bytes()
    pages, reader = _text(pdf)
    assert float(reader.pages[0].mediabox.width) == pytest.approx(612)
    assert b"/Subtype /Image" in pdf
    text = "\n".join(pages)
    assert "anon-" in text and "198.51.100.7" not in text and "203.0.113.66" not in text
    assert (tmp_path / "demo.db.key").exists()


def test_broken_logo_does_not_stop_the_report(tmp_path: Path) -> None:
    bad = tmp_path / "logo.png"
    bad.write_bytes(b"not an image")
    db = tmp_path / "e.db"
    empty_store(db).close()
    p = produce_report(_config(tmp_path, logo=bad), db, DAY, DAY + timedelta(days=1))
    assert p.path.read_bytes().startswith(b"%PDF")


def _render_store(store: Store) -> bytes:
    start_ms = int(DAY.timestamp() * 1000)
    rows = rq.fetch(store.conn, start_ms, start_ms + 86_400_000, bucket_minutes=60)
    data = build_report_data(rows, generated_at=DAY, options=ReportOptions(), ruleset=RulesetInfo())
    return render_pdf(data)


def test_huge_and_strange_evidence_renders(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "x.db")
    weird = "".join(chr(c) for c in range(1, 0x3000, 7)) + "\U0001f600" * 50 + "/" + "A" * 100_000
    hits = [
        hit(
            DAY + timedelta(minutes=i),
            f"r{i}",
            "scanner-probe",
            Severity.MEDIUM,
            key=str(i),
            evidence=weird,
            title=weird[:500],
            client_ip=weird[:300],
            source=weird[:200],
        )
        for i in range(30)
    ]
    write(store, [], hits)
    pages, _ = _text(_render_store(store))
    assert len(pages) > 3


def test_core_fonts_when_no_ttf_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(style, "FONT_DIRS", ())
    for cached in (style.fonts, style.styles, layout._right_style):
        cached.cache_clear()
    try:
        store = Store.open(tmp_path / "x.db")
        write(
            store,
            [],
            [
                hit(
                    DAY,
                    "r",
                    "scanner-probe",
                    Severity.LOW,
                    evidence="GET /\u65e5\u672c \u2713 caf\u00e9",
                )
            ],
        )
        pages, _ = _text(_render_store(store))
        text = "\n".join(pages)
        assert "GET /?? ? caf\u00e9" in text
        assert "x Fail" in text or "+ Pass" in text or "! Needs review" in text
    finally:
        for cached in (style.fonts, style.styles, layout._right_style):
            cached.cache_clear()


E2E_LINES = [
    (
        '198.51.100.9 - - [20/Nov/2026:10:00:01 +0000] "GET /v1/pay?card=4111111111111111 HTTP/1.1"'
        ' 200 12 "-" "curl/8"'
    ),
    (
        '198.51.100.9 - - [20/Nov/2026:10:00:02 +0000] "GET /login?user=bob&password=S3cr3t-Passw0rd'
        ' HTTP/1.1" 200 1 "-" "ua"'
    ),
    (
        '198.51.100.9 - - [20/Nov/2026:10:00:03 +0000] "GET /u?email=planted.person%40example.org'
        ' HTTP/1.1" 200 1 "https://x.example/?email=planted.person@example.org" "ua"'
    ),
    (
        '203.0.113.5 - - [20/Nov/2026:10:00:04 +0000] "GET /<img%20src=%22/etc/passwd%22/>'
        ' HTTP/1.1" 404 1 "-" "sqlmap/1.5"'
    ),
]


def test_scan_then_report_end_to_end_keeps_secrets_out(tmp_path: Path) -> None:
    """The real pipeline (formats, redaction, bundled rules) feeding the report."""
    from click.testing import CliRunner

    import auditor.cli.report
    import auditor.cli.scan  # noqa: F401  (register the verbs)
    from auditor.cli import cli

    log = tmp_path / "access.log"
    log.write_text("\n".join(E2E_LINES) + "\n")
    db, out = tmp_path / "e2e.db", tmp_path / "r" / "e2e.pdf"
    runner = CliRunner()
    res = runner.invoke(cli, ["scan", "--quiet", "--db", str(db), "--format", "combined", str(log)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        cli,
        [
            "report",
            "--db",
            str(db),
            "--from",
            "2026-11-20",
            "--to",
            "2026-11-21",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    pdf = out.read_bytes()
    pages, reader = _text(pdf)
    text = "\n".join(pages)
    streams = b"".join(_streams(reader))
    for secret in ("4111111111111111", "S3cr3t-Passw0rd", "planted.person"):
        assert secret not in text and secret.encode() not in pdf and secret.encode() not in streams
    assert "411111******1111" in text and "finding(s)" in text


def test_own_ids_and_hashes_are_not_mistaken_for_card_numbers(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "x.db")
    write(store, [], [hit(DAY, "r", "scanner-probe", Severity.LOW)])
    store.conn.execute("UPDATE findings SET id = '0000000000000000'")  # Luhn-valid digits
    store.conn.commit()
    text = "".join(_text(_render_store(store))[0])
    assert "0000000000000000" in "".join(text.split())
