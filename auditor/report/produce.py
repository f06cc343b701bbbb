"""One report from config and store to a chained PDF on disk: the shell around the pure core.

Used by ``log-auditor report`` and by the scheduler: read the rows (aggregates only),
load rule metadata and the pseudonym key, build ``ReportData``, render, then write the
PDF, its ``.sha256`` and the manifest line atomically under the directory's lock.
"""

from __future__ import annotations

import importlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auditor.config import Config
from auditor.errors import RulesetError, StoreError
from auditor.report import integrity
from auditor.report.data import (
    PreviousReport,
    ReportData,
    ReportOptions,
    RuleInfo,
    RulesetInfo,
    SourceSetting,
    bucket_minutes_for,
    build_report_data,
)
from auditor.report.fleet import CLIENTS_PER_HOST, HostRows, fleet_report_data
from auditor.report.pdf import render_pdf
from auditor.report.periods import report_filename
from auditor.report.style import fonts
from auditor.store import Store
from auditor.store import report_queries as rq

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Produced:
    path: Path
    sha256: str
    report_id: str
    findings: int
    entry: str  # manifest entry hash
    seconds: float


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def rule_infos(rules: Iterable[Any]) -> tuple[RuleInfo, ...]:
    """Rule metadata, read by attribute so a changed ``Rule`` class degrades, not breaks."""
    out = []
    for r in rules:
        rid = getattr(r, "id", None)
        if not rid:
            continue
        controls = getattr(r, "controls", ()) or ()
        out.append(
            RuleInfo(
                id=str(rid),
                title=_str(getattr(r, "title", "")),
                category=_str(getattr(r, "category", "")),
                severity=_str(getattr(r, "severity", "")),
                description=_str(getattr(r, "description", "")),
                remediation=_str(getattr(r, "remediation", "")),
                controls=tuple(str(c) for c in controls),
            )
        )
    return tuple(out)


def ruleset_info(config: Config, *, strict: bool) -> RulesetInfo:
    """The configured ruleset's version, hash and rule metadata.

    ``strict``: a bad rule file raises ``RulesetError`` (the CLI exits 2); otherwise (the
    scheduler) the report is still produced and says the rules could not be read.
    """
    try:
        from auditor.rules import bundled_rules_dir, load_rulesets
    except ImportError as exc:
        return RulesetInfo(error=f"rule engine not available ({exc})")
    try:
        paths: list[Path] = []
        if config.rules.bundled:
            paths.append(bundled_rules_dir())
        paths.extend(config.rules.paths)
        rs = load_rulesets(paths, config.rules.overrides)
    except RulesetError as exc:
        if strict:
            raise
        log.warning("report: rules not loaded: %s", exc)
        return RulesetInfo(error=str(exc))
    rules = getattr(rs, "rules", ())
    if isinstance(rules, dict):
        rules = rules.values()
    version = getattr(rs, "version", None) or "unknown"
    digest = getattr(rs, "sha256", None) or getattr(rs, "hash", None) or ""
    return RulesetInfo(version=str(version), hash=str(digest), rules=rule_infos(rules))


def key_file(config: Config, db_path: Path) -> Path:
    return config.store.key_file or db_path.with_name(db_path.name + ".key")


def pseudonym_key(config: Config, db_path: Path) -> bytes:
    """The store's keyed-hash key (created owner-only if missing, like the pipeline does)."""
    path = key_file(config, db_path)
    try:
        keys = importlib.import_module("auditor.keys")
    except ImportError:
        pass
    else:
        return bytes(keys.load_or_create_key(path))
    if path.exists():
        return path.read_bytes()
    key = os.urandom(32)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def options_for(
    config: Config, db_path: Path, job: str | None, previous: PreviousReport | None
) -> ReportOptions:
    rc = config.report
    return ReportOptions(
        organisation=rc.organisation,
        scope=rc.scope,
        job=job,
        paper=rc.paper,
        pseudonym_key=pseudonym_key(config, db_path) if rc.pseudonymise else None,
        sources=tuple(SourceSetting(s.name, s.path, s.format, s.scheme) for s in config.sources),
        store=str(db_path),
        logo=str(rc.logo) if rc.logo else None,
        previous=previous,
    )


def build(
    config: Config,
    db_path: Path,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    job: str | None = None,
    previous: PreviousReport | None = None,
    strict_rules: bool = True,
) -> tuple[ReportData, RulesetInfo]:
    """Read the store and assemble the report data (no file is written)."""
    store = Store.open_readonly(db_path)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    options = options_for(config, db_path, job, previous)
    with ThreadPoolExecutor(1, thread_name_prefix="report-clients") as pool:
        # The top-clients sort is the one query that grows with traffic: run it beside
        # the rest (rules, fonts, the other queries) on its own read-only connection.
        clients = pool.submit(rq.clients_from_file, str(db_path), start_ms, end_ms, options.top_n)
        try:
            rules = ruleset_info(config, strict=strict_rules)
            fonts()
            rows = rq.fetch(
                store.conn,
                start_ms,
                end_ms,
                bucket_minutes=bucket_minutes_for(start, end),
                gap_minutes=options.gap_minutes,
                top_n=options.top_n,
                client_rows=clients.result(),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{db_path}: cannot read the store for the report: {exc}") from None
        finally:
            store.close()
    data = build_report_data(rows, generated_at=now, options=options, ruleset=rules)
    return data, rules


def read_host(path: Path, start: datetime, end: datetime, *, gap_minutes: int) -> HostRows:
    """One store of a fleet report, read without writing it: its rows, hash, size and mtime.

    The hash is taken of the file as it is before the queries; a size or mtime that
    differs afterwards (a live store) is reported, not hidden.
    """
    try:
        before = path.stat()
        digest = integrity.sha256_file(path)
    except FileNotFoundError:
        raise StoreError(f"{path}: no such store") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the store: {exc.strerror or exc}") from None
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    try:
        conn = rq.connect_readonly(path)
        try:
            rows = rq.fetch(
                conn,
                start_ms,
                end_ms,
                bucket_minutes=bucket_minutes_for(start, end),
                gap_minutes=gap_minutes,
                top_n=CLIENTS_PER_HOST,
            )
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot read the store for the report: {exc}") from None
    after = path.stat()
    return HostRows(
        store=str(path),
        stem=path.stem,
        sha256=digest,
        size=before.st_size,
        modified=datetime.fromtimestamp(before.st_mtime, UTC),
        changed=(before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns),
        rows=rows,
    )


def build_fleet(
    config: Config,
    db_paths: Sequence[Path],
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    job: str | None = None,
    previous: PreviousReport | None = None,
    strict_rules: bool = True,
) -> tuple[ReportData, RulesetInfo]:
    """Read every host's store (read-only) and merge them into one report's data.

    Pseudonyms use the key of the configured store, so one client has one pseudonym
    across hosts; nothing is created or written beside the input stores.
    """
    options = options_for(config, config.store.path, job, previous)
    with ThreadPoolExecutor(2, thread_name_prefix="report-hosts") as pool:
        # SQLite releases the GIL while it reads: two stores at a time on two cores.
        reads = [
            pool.submit(read_host, p, start, end, gap_minutes=options.gap_minutes) for p in db_paths
        ]
        rules = ruleset_info(config, strict=strict_rules)
        fonts()
        hosts = [r.result() for r in reads]
    data = fleet_report_data(hosts, generated_at=now, options=options, ruleset=rules)
    return data, rules


Builder = Callable[[PreviousReport | None], tuple[ReportData, RulesetInfo]]


def _file_report(
    target: Path, job: str | None, kind: str | None, now: datetime, build_data: Builder
) -> Produced:
    """Build, render and file one report under the directory's manifest lock."""
    t0 = time.perf_counter()
    directory = target.parent if str(target.parent) else Path(".")
    with integrity.manifest_lock(directory):
        last = integrity.last_report(directory)
        prev = PreviousReport(last.file, last.sha256, last.hash) if last else None
        data, rules = build_data(prev)
        pdf = render_pdf(data, rules.rules)
        path = integrity.unique_path(target)
        entry = integrity.store_report(
            directory,
            path,
            pdf,
            report_id=data.meta.report_id,
            job=job,
            period=kind,
            start=data.meta.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            end=data.meta.end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            generated_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            findings=data.findings_total,
        )
    seconds = time.perf_counter() - t0
    log.info(
        "report %s written to %s (%d findings, %.1f s)",
        data.meta.report_id,
        path,
        data.findings_total,
        seconds,
    )
    return Produced(
        path, entry.sha256, data.meta.report_id, data.findings_total, entry.hash, seconds
    )


def produce_report(
    config: Config,
    db_path: Path,
    start: datetime,
    end: datetime,
    *,
    out: Path | None = None,
    job: str | None = None,
    kind: str | None = None,
    now: datetime | None = None,
    strict_rules: bool = True,
) -> Produced:
    """Build, render and file one report; returns where it went and its hash."""
    now = now or datetime.now(UTC)
    target = out or config.report.output_dir / report_filename(job, kind, start, end)

    def build_data(prev: PreviousReport | None) -> tuple[ReportData, RulesetInfo]:
        return build(
            config, db_path, start, end, now=now, job=job, previous=prev, strict_rules=strict_rules
        )

    return _file_report(target, job, kind, now, build_data)


def produce_fleet_report(
    config: Config,
    db_paths: Sequence[Path],
    start: datetime,
    end: datetime,
    *,
    out: Path | None = None,
    job: str | None = None,
    kind: str | None = None,
    now: datetime | None = None,
    strict_rules: bool = True,
) -> Produced:
    """One report over several hosts' stores, filed and chained like any other report."""
    now = now or datetime.now(UTC)
    name = f"{job}-fleet" if job else "fleet"
    target = out or config.report.output_dir / report_filename(name, kind, start, end)

    def build_data(prev: PreviousReport | None) -> tuple[ReportData, RulesetInfo]:
        return build_fleet(
            config,
            db_paths,
            start,
            end,
            now=now,
            job=job,
            previous=prev,
            strict_rules=strict_rules,
        )

    return _file_report(target, job, kind, now, build_data)
