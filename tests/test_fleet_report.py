"""The fleet report: three hosts' real stores (scanned with the real pipeline) in one PDF.

The stores are only read: their bytes and mtimes are unchanged after the report and no
``-wal``/``-shm`` file appears beside them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pypdf
import pytest
from click.testing import CliRunner
from PIL import Image

import auditor.cli.report
import auditor.cli.scan  # noqa: F401  (importing them registers `scan` and `report`)
from auditor.cli import cli
from auditor.report.assess import Result
from auditor.report.data import ReportOptions, RulesetInfo
from auditor.report.fleet import HostRows, fleet_report_data, host_names, merge_rows
from auditor.report.pdf import render_pdf
from auditor.report.produce import read_host
from auditor.store import report_queries as rq

ROOT = Path(__file__).resolve().parent.parent
DAY = datetime(2026, 11, 20, tzinfo=UTC)
# Three hosts, three different logs: an API with incidents, a plain-HTTP legacy site, and
# an AWS load balancer whose sample file has comment lines (unparsed).
LOGS = {
    "web-1": (ROOT / "examples" / "logs" / "api-access.log", "auto"),
    "web-2": (ROOT / "examples" / "logs" / "legacy-http.log", "auto"),
    "edge": (ROOT / "tests" / "samples" / "proxies.log", "aws-alb"),
}
META_HOST = "web-1.prod.example.net"  # web-1's store names its host in its meta table


def _state(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns


def _flat(text: str) -> str:
    """Text without any white space: a name the PDF wraps in a narrow cell still matches."""
    return re.sub(r"\s+", "", text)


def _pages(pdf: Path) -> list[str]:
    reader = pypdf.PdfReader(io.BytesIO(pdf.read_bytes()))
    return [re.sub(r"[ \t]+", " ", p.extract_text() or "") for p in reader.pages]


def _section(pages: list[str], first: str, after: str) -> str:
    """The text from ``first`` up to ``after``, over as many pages as it takes."""
    text = "\n".join(pages)
    return text[text.index(first) : text.index(after)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Scan each log into its own store, as each host's sidecar would, then copy them."""
    tmp = tmp_path_factory.mktemp("fleet")
    conf = tmp / "config.toml"
    conf.write_text(f'[store]\npath = "{tmp / "local.db"}"\n[report]\noutput_dir = "{tmp}"\n')
    stores = tmp / "stores"
    stores.mkdir()
    runner = CliRunner()
    for host, (log, fmt) in LOGS.items():
        db = stores / f"{host}.db"
        res = runner.invoke(
            cli, ["scan", "--config", str(conf), "--db", str(db), "--format", fmt, str(log)]
        )
        assert res.exit_code == 0, res.output
    with sqlite3.connect(stores / "web-1.db") as conn:
        conn.execute("INSERT INTO meta (key, value) VALUES ('host', ?)", (META_HOST,))
    conn.close()
    for p in stores.iterdir():  # only the stores, as copied from the hosts
        if p.suffix != ".db":
            p.unlink()
    return {"conf": conf, "stores": stores, "tmp": tmp}


def _report(conf: Path, dbs: list[Path], out: Path) -> subprocess.CompletedProcess[str]:
    args = ["report", "--config", str(conf), "--from", "2026-11-20", "--to", "2026-11-21"]
    for db in dbs:
        args += ["--db", str(db)]
    args += ["--out", str(out)]
    return subprocess.run(
        [sys.executable, "-m", "auditor", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LOG_AUDITOR_CONFIG": str(conf)},
    )


@pytest.fixture(scope="module")
def fleet_pdf(fleet: dict[str, Path]) -> tuple[Path, dict[str, tuple[str, int, int]]]:
    stores = fleet["stores"]
    dbs = [stores / f"{h}.db" for h in LOGS]
    before = {p.name: _state(p) for p in dbs}
    listing = sorted(p.name for p in stores.iterdir())
    out = fleet["tmp"] / "reports" / "fleet.pdf"
    res = _report(fleet["conf"], dbs, out)
    assert res.returncode == 0, res.stderr
    assert "fleet of 3 store(s)" in res.stdout
    assert "Traceback" not in res.stderr
    after = {p.name: _state(p) for p in dbs}
    assert after == before  # bytes, size and mtime of every store as they were
    assert sorted(p.name for p in stores.iterdir()) == listing  # no -wal, -shm or .key
    return out, before


def test_every_host_in_the_completeness_table(
    fleet_pdf: tuple[Path, dict[str, tuple[str, int, int]]],
) -> None:
    out, _ = fleet_pdf
    pages = _pages(out)
    comp = _section(pages, "1 Scope and data completeness", "2 Summary")
    for host in (META_HOST, "web-2", "edge"):
        assert host in comp
    for source in ("api-access.log", "legacy-http.log", "proxies.log"):
        assert source in comp
    assert "name from the store meta" in comp and "name from the file name" in comp
    assert "3 hosts, 3 sources." in comp
    # edge's comment lines are unparsed and counted (as the store counted them).
    edge = out.parent.parent / "stores" / "edge.db"
    with sqlite3.connect(f"{edge.as_uri()}?immutable=1", uri=True) as conn:
        read, unparsed = conn.execute(
            "SELECT lines_read, lines_unparsed FROM source_counters"
        ).fetchone()
    conn.close()
    assert unparsed > 0 and f"{100 * unparsed / read:.2f}%" in comp
    assert "Stretches without data longer than 60 minutes" in comp
    cover = pages[0]
    assert f"3: {META_HOST}, web-2, edge" in cover
    assert "Controls not met, by host of 3:" in cover


def test_control_matrix_over_all_hosts_names_them(
    fleet_pdf: tuple[Path, dict[str, tuple[str, int, int]]],
) -> None:
    out, _ = fleet_pdf
    text = "\n".join(_pages(out))
    for title in ("3 Control matrix", "PCI DSS v4.0.1", "OWASP API Security Top 10 2023", "GDPR"):
        assert title in text
    assert "a control fails if a finding of any host shows" in text
    assert _flat(f"Fails on: {META_HOST}") in _flat(text)  # the PAN in web-1's log
    assert _flat("Fails on: edge") in _flat(text)  # edge's plain HTTP (the ALB logs the scheme)


def test_findings_have_their_host(fleet_pdf: tuple[Path, dict[str, tuple[str, int, int]]]) -> None:
    out, _ = fleet_pdf
    pages = _pages(out)
    start = next(i for i, p in enumerate(pages) if "4 Findings in detail" in p)
    findings = "\n".join(pages[start : start + 6])
    assert _flat(f"Host {META_HOST}") in _flat(findings)
    assert _flat("Host edge") in _flat(findings)
    assert "4111111111111111" not in "\n".join(pages)


def test_integrity_lists_every_store_hash(
    fleet_pdf: tuple[Path, dict[str, tuple[str, int, int]]],
) -> None:
    out, before = fleet_pdf
    pages = _pages(out)
    text = "".join(p for p in pages if "Input stores" in p).replace("\n", "")
    for digest, _, _ in before.values():
        assert digest in text
    assert (out.parent / "manifest.jsonl").exists()
    assert out.with_name(out.name + ".sha256").exists()
    res = CliRunner().invoke(cli, ["report", "verify", str(out.parent)])
    assert res.exit_code == 0, res.output


def test_pages_render_to_png(fleet_pdf: tuple[Path, dict[str, tuple[str, int, int]]]) -> None:
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm absent")
    out, _ = fleet_pdf
    pages = _pages(out)
    comp = next(i for i, p in enumerate(pages) if "Completeness per host" in p) + 1
    for n in (1, comp):
        prefix = out.parent / f"page{n}"
        subprocess.run(
            ["pdftoppm", "-r", "60", "-png", "-f", str(n), "-l", str(n), str(out), str(prefix)],
            check=True,
            timeout=60,
        )
        png = next(out.parent.glob(f"page{n}-*.png"))
        with Image.open(png) as img:
            lo, hi = cast(tuple[int, int], img.convert("L").getextrema())
            assert img.width > 400 and lo < 100 and hi > 200  # ink on paper


def test_directory_form_reads_every_store(fleet: dict[str, Path], tmp_path: Path) -> None:
    stores = fleet["stores"]
    before = {p.name: _state(p) for p in stores.glob("*.db")}
    out = tmp_path / "dir.pdf"
    res = CliRunner().invoke(
        cli,
        [
            "report",
            "--config",
            str(fleet["conf"]),
            "--db",
            str(stores),
            "--db",
            str(stores / "edge.db"),  # also named on its own: read once
            "--from",
            "2026-11-20",
            "--to",
            "2026-11-21",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "fleet of 3 store(s)" in res.output
    comp = _section(_pages(out), "Completeness per host", "2 Summary")
    for host in (META_HOST, "web-2", "edge"):
        assert host in comp
    assert {p.name: _state(p) for p in stores.glob("*.db")} == before


def test_single_db_is_the_one_host_report(fleet: dict[str, Path], tmp_path: Path) -> None:
    db = tmp_path / "one.db"
    shutil.copy(fleet["stores"] / "web-2.db", db)
    out = tmp_path / "one.pdf"
    res = CliRunner().invoke(
        cli,
        ["report", "--config", str(fleet["conf"]), "--db", str(db), "--from", "2026-11-20"]
        + ["--to", "2026-11-21", "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert "fleet" not in res.output
    text = "\n".join(_pages(out))
    assert "Lines read since the store was created" in text
    assert "Completeness per host" not in text and "Input stores" not in text


def test_bad_fleet_input_is_one_line_and_an_exit_code(
    fleet: dict[str, Path], tmp_path: Path
) -> None:
    runner = CliRunner()
    base = ["report", "--config", str(fleet["conf"]), "--out", str(tmp_path / "x.pdf")]
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(cli, [*base, "--db", str(empty)])
    assert res.exit_code == 2 and "no *.db store in this directory" in res.output
    res = runner.invoke(
        cli, [*base, "--db", str(fleet["stores"] / "edge.db"), "--db", str(tmp_path / "gone.db")]
    )
    assert res.exit_code == 1 and "gone.db: no such store" in res.output
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    res = runner.invoke(cli, [*base, "--db", str(fleet["stores"] / "edge.db"), "--db", str(junk)])
    assert res.exit_code == 1 and "junk.db: cannot read the store" in res.output
    assert "Traceback" not in res.output


# -- the pure merge ---------------------------------------------------------------------


def _hosts(fleet: dict[str, Path]) -> list[HostRows]:
    end = DAY + timedelta(days=1)
    return [read_host(fleet["stores"] / f"{h}.db", DAY, end, gap_minutes=60) for h in LOGS]


def test_merge_adds_up_and_keeps_hosts_apart(fleet: dict[str, Path]) -> None:
    hosts = _hosts(fleet)
    named = [(n, h.rows) for (n, _), h in zip(host_names(hosts), hosts, strict=True)]
    merged = merge_rows(named)
    assert len(merged.findings) == sum(len(h.rows.findings) for h in hosts)
    assert {f.host for f in merged.findings} == {META_HOST, "edge"}
    assert sum(p.requests for p in merged.periods) == sum(
        p.requests for h in hosts for p in h.rows.periods
    )
    assert sum(b.requests for b in merged.buckets) == sum(p.requests for p in merged.periods)
    assert {s.source for s in merged.sources} == {
        f"{META_HOST}/api-access.log",
        "web-2/legacy-http.log",
        "edge/proxies.log",
    }
    sev = [f.severity for f in merged.findings]
    assert sev == sorted(sev, reverse=True)
    with pytest.raises(ValueError):
        merge_rows([])


def test_merge_names_each_read_gap_by_its_host(fleet: dict[str, Path]) -> None:
    hosts = _hosts(fleet)
    named = [(n, h.rows) for (n, _), h in zip(host_names(hosts), hosts, strict=True)]
    (first, rows0), (last, rows2) = named[0], named[2]

    def gap(at_ms: int, source: str) -> rq.JournalRow:
        return rq.JournalRow(at_ms, source, "read-gap", f"/var/log/{source}.log was truncated")

    named[0] = (first, dataclasses.replace(rows0, read_gaps=(gap(2000, "api"),)))
    named[2] = (last, dataclasses.replace(rows2, read_gaps=(gap(1000, "alb"),)))
    merged = merge_rows(named)
    assert [(g.at_ms, g.source) for g in merged.read_gaps] == [
        (1000, f"{last}/alb"),
        (2000, f"{first}/api"),
    ]


def test_a_control_fails_if_it_fails_on_any_host(fleet: dict[str, Path]) -> None:
    hosts = _hosts(fleet)
    d = fleet_report_data(
        hosts,
        generated_at=DAY + timedelta(days=1),
        options=ReportOptions(),
        ruleset=RulesetInfo(),
    )
    assert d.fleet is not None
    failed = {c.id for c in d.controls if c.result is Result.FAIL}
    assert failed
    for c in d.fleet.controls:
        if c.control_id in failed:
            assert c.failing
        else:
            assert not c.failing  # a "Fails on" only where the control fails
    pan = d.fleet.hosts_for("PCI-DSS-4.0.1:3.5.1")
    assert pan is not None and pan.failing == (META_HOST,)
    assert [h.name for h in d.fleet.hosts] == [META_HOST, "web-2", "edge"]
    assert [h.name_from for h in d.fleet.hosts] == ["store meta", "file name", "file name"]
    # Each host's own completeness is its own: edge has unparsed lines, web-1 none.
    by = {h.name: h.completeness.sources[0] for h in d.fleet.hosts}
    assert by["edge"].lines_unparsed > 0 and by[META_HOST].lines_unparsed == 0


def test_listed_findings_carry_a_host_column(fleet: dict[str, Path]) -> None:
    d = fleet_report_data(
        _hosts(fleet),
        generated_at=DAY + timedelta(days=1),
        options=ReportOptions(max_detail=2),
        ruleset=RulesetInfo(),
    )
    assert d.listed and all(f.host for f in d.listed)
    reader = pypdf.PdfReader(io.BytesIO(render_pdf(d)))
    text = "\n".join(p.extract_text() or "" for p in reader.pages)
    assert "SeverityHostRuleSeen(UTC)" in _flat(text)


def test_same_host_name_twice_gets_the_file_name(fleet: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "web-1-yesterday.db"
    shutil.copy(fleet["stores"] / "web-1.db", copy)
    end = DAY + timedelta(days=1)
    hosts = [
        read_host(fleet["stores"] / "web-1.db", DAY, end, gap_minutes=60),
        read_host(copy, DAY, end, gap_minutes=60),
    ]
    names = [n for n, _ in host_names(hosts)]
    assert names == [f"{META_HOST} (web-1)", f"{META_HOST} (web-1-yesterday)"]
    # Same name, same stem: still two names.
    twice = [hosts[0], dataclasses.replace(hosts[0], store="elsewhere/web-1.db")]
    assert len({n for n, _ in host_names(twice)}) == 2


def test_readonly_uri_reads_a_live_wal(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    assert rq.readonly_uri(db).endswith("?mode=ro")  # the WAL holds the rows
    ro = rq.connect_readonly(db)
    assert ro.execute("SELECT count(*) FROM t").fetchone() == (1,)
    with pytest.raises(sqlite3.OperationalError):
        ro.execute("INSERT INTO t VALUES (2)")
    ro.close()
    conn.close()  # the last connection checkpoints and removes the WAL
    assert rq.readonly_uri(db).endswith("?immutable=1")
