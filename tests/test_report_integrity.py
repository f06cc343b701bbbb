"""Integrity: .sha256 beside each PDF, the hash-chained manifest, verify, the CLI."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import orjson
import pypdf
import pytest
from click.testing import CliRunner

import auditor.cli.report  # noqa: F401  (registers `report` on the group)
from auditor.cli import cli
from auditor.config import Config, ReportConfig, RulesConfig
from auditor.report import integrity
from auditor.report.produce import produce_report
from report_samples import DAY, demo_store, empty_store


def _config(out: Path) -> Config:
    return Config(rules=RulesConfig(bundled=False), report=ReportConfig(output_dir=out))


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    """Three chained reports (three days) in one directory."""
    db = tmp_path / "x.db"
    empty_store(db).close()
    cfg = _config(tmp_path / "reports")
    for i in range(3):
        start = DAY + timedelta(days=i)
        produce_report(cfg, db, start, start + timedelta(days=1), job="daily", kind="day")
    return tmp_path / "reports"


def test_sidecars_manifest_chain_and_modes(reports: Path) -> None:
    entries = integrity.read_manifest(reports)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev == integrity.GENESIS
    assert [e.prev for e in entries[1:]] == [e.hash for e in entries[:-1]]
    for e in entries:
        pdf = reports / e.file
        assert integrity.sha256_file(pdf) == e.sha256
        assert integrity.sidecar(pdf).read_text() == f"{e.sha256}  {e.file}\n"
        assert stat.S_IMODE(pdf.stat().st_mode) == 0o600
        assert e.fields["job"] == "daily" and e.fields["end"].endswith("T00:00:00Z")
    assert stat.S_IMODE(reports.stat().st_mode) == 0o700
    assert stat.S_IMODE((reports / integrity.MANIFEST).stat().st_mode) == 0o600
    assert not list(reports.glob(".*.tmp"))
    result = integrity.verify(reports)
    assert result.ok and result.checked == 3 and result.head == entries[-1].hash


def test_each_report_names_its_predecessor(reports: Path) -> None:
    entries = integrity.read_manifest(reports)
    text = " ".join(p.extract_text() for p in pypdf.PdfReader(reports / entries[2].file).pages)
    flat = "".join(text.split())
    assert entries[1].sha256 in flat and entries[1].hash in flat
    first = " ".join(p.extract_text() for p in pypdf.PdfReader(reports / entries[0].file).pages)
    assert "this report starts the chain" in " ".join(first.split())


def test_modified_report_is_detected(reports: Path) -> None:
    pdf = reports / integrity.read_manifest(reports)[1].file
    data = bytearray(pdf.read_bytes())
    data[len(data) // 2] ^= 0x01
    pdf.write_bytes(bytes(data))
    problems = integrity.verify(reports).problems
    assert any("modified" in p and pdf.name in p for p in problems)


def test_missing_report_and_unlisted_report(reports: Path) -> None:
    first = reports / integrity.read_manifest(reports)[0].file
    first.rename(reports / "renamed.pdf")
    problems = integrity.verify(reports).problems
    assert any("missing" in p and first.name in p for p in problems)
    assert any("renamed.pdf: not in the manifest" in p for p in problems)


def test_edited_or_removed_manifest_line(reports: Path) -> None:
    path = reports / integrity.MANIFEST
    lines = path.read_bytes().splitlines()
    entry = orjson.loads(lines[1])
    entry["findings"] = 0 if entry["findings"] else 1
    edited = [lines[0], orjson.dumps(entry), lines[2]]
    path.write_bytes(b"\n".join(edited) + b"\n")
    assert any("edited" in p for p in integrity.verify(reports).problems)
    path.write_bytes(b"\n".join([lines[0], lines[2]]) + b"\n")
    problems = integrity.verify(reports).problems
    assert any("sequence" in p for p in problems) and any("chain" in p for p in problems)


def test_garbage_manifest_and_empty_directory(tmp_path: Path) -> None:
    assert not integrity.verify(tmp_path).ok
    (tmp_path / integrity.MANIFEST).write_text("not json\n")
    assert "line 1" in integrity.verify(tmp_path).problems[0]


def test_pruned_reports_stay_accounted_for(reports: Path) -> None:
    entries = integrity.read_manifest(reports)
    with integrity.manifest_lock(reports):
        integrity.prune(reports, entries[:1], "2027-01-01T00:00:00Z")
    assert not (reports / entries[0].file).exists()
    assert not integrity.sidecar(reports / entries[0].file).exists()
    assert integrity.read_manifest(reports)[-1].kind == "prune"
    assert integrity.verify(reports).ok


def test_a_report_is_never_overwritten(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    empty_store(db).close()
    cfg = _config(tmp_path / "r")
    a = produce_report(cfg, db, DAY, DAY + timedelta(days=1), job="daily", kind="day")
    b = produce_report(cfg, db, DAY, DAY + timedelta(days=1), job="daily", kind="day")
    assert a.path.name == "log-auditor-daily-2026-11-20.pdf"
    assert b.path.name == "log-auditor-daily-2026-11-20-r2.pdf"
    assert integrity.verify(tmp_path / "r").ok


def test_write_atomic_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "d" / "f.bin"
    integrity.write_atomic(target, b"one")
    integrity.write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]


def test_cli_report_and_verify(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    demo_store(db).close()
    conf = tmp_path / "c.toml"
    conf.write_text('[rules]\nbundled = false\n[report]\norganisation = "ACME"\n')
    out = tmp_path / "out" / "r.pdf"
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "report",
            "--config",
            str(conf),
            "--db",
            str(db),
            "--from",
            "2026-11-20",
            "--to",
            "2026-11-21T00:00:00Z",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert str(out) in res.output and "6 findings" in res.output
    assert integrity.sidecar(out).exists()
    res = runner.invoke(cli, ["report", "verify", str(out.parent)])
    assert res.exit_code == 0 and "OK 1 report(s)" in res.output
    out.write_bytes(out.read_bytes() + b"%")
    res = runner.invoke(cli, ["report", "verify", str(out.parent)])
    assert res.exit_code == 1 and "modified" in res.output


def test_cli_errors_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text("[rules]\nbundled = false\n")
    monkeypatch.setenv("LOG_AUDITOR_CONFIG", str(conf))
    runner = CliRunner()
    res = runner.invoke(
        cli, ["report", "--db", str(tmp_path / "none.db"), "--out", str(tmp_path / "a.pdf")]
    )
    assert res.exit_code == 1 and "no such store" in res.output
    res = runner.invoke(
        cli, ["report", "--db", str(tmp_path / "none.db"), "--from", "yesterday-ish"]
    )
    assert res.exit_code == 2 and "--from" in res.output
    res = runner.invoke(
        cli, ["report", "--db", "x.db", "--from", "2026-11-22", "--to", "2026-11-21"]
    )
    assert res.exit_code == 2
