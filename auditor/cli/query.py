"""`events`, `findings` and `status`: read the store, for people (tables) and scripts (JSON)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson

from auditor.cli import cli
from auditor.cli.common import (
    config_option,
    db_option,
    iso_ms,
    parse_time,
    resolve_config,
    resolve_db,
    to_ms,
)
from auditor.config import Config
from auditor.engine import load_config_rules
from auditor.errors import AuditorError, UsageError
from auditor.export import SHAPES, serialize_event, serialize_finding
from auditor.export.native import finding_native
from auditor.model import CATEGORIES, Severity
from auditor.readgap import JOURNAL_KIND as READ_GAP
from auditor.rules import Rule
from auditor.store import Store
from auditor.store.outputs import output_status
from auditor.store.queries import iter_events, iter_findings, recent_journal, source_status, totals


def _open(config_path: Path | None, db_path: Path | None) -> Store:
    config = resolve_config(config_path)
    return Store.open_readonly(resolve_db(config, db_path))


def _span(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    s = to_ms(parse_time(since, option="--since")) if since else None
    u = to_ms(parse_time(until, option="--until")) if until else None
    return s, u


def _cut(text: object, width: int) -> str:
    s = "-" if text is None else str(text)
    return s if len(s) <= width else s[: width - 1] + "…"


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def finding_json(f: dict[str, Any]) -> dict[str, Any]:
    """The CONTRACT.md shape of a finding."""
    return finding_native(f)


format_option = click.option(
    "--format",
    "shape",
    type=click.Choice(SHAPES),
    default=None,
    help="JSON lines in this shape: native (CONTRACT.md, = --json), ocsf or ecs.",
)


def _shape(as_json: bool, shape: str | None) -> str | None:
    """The JSON shape asked for, or None for the table; --json is --format native."""
    if as_json and shape not in (None, "native"):
        raise UsageError(f"--json prints the native shape; drop it to use --format {shape}")
    return "native" if as_json else shape


def _rule_lookup(config: Config, shape: str) -> Callable[[str], Rule | None]:
    """Rule metadata (description, remediation) for the OCSF/ECS shapes.

    A rule file that does not load must not hide the findings: say so on stderr and fall
    back to what the finding itself holds (its title and controls).
    """
    if shape == "native":
        return lambda _rule_id: None
    try:
        ruleset = load_config_rules(config)
    except AuditorError as exc:
        click.echo(f"log-auditor: warning: rule descriptions left out: {exc}", err=True)
        return lambda _rule_id: None
    return ruleset.get


@cli.command("findings")
@config_option
@db_option
@click.option("--since", default=None, help="ISO 8601 time or span (24h, 7d).")
@click.option("--until", default=None, help="ISO 8601 time or span.")
@click.option("--category", type=click.Choice(CATEGORIES), default=None)
@click.option(
    "--min-severity", type=click.Choice(["low", "medium", "high", "critical"]), default=None
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@format_option
def findings_cmd(
    config_path: Path | None,
    db_path: Path | None,
    since: str | None,
    until: str | None,
    category: str | None,
    min_severity: str | None,
    as_json: bool,
    shape: str | None,
) -> None:
    """List findings (one per rule, key and episode)."""
    s, u = _span(since, until)
    out_shape = _shape(as_json, shape)
    config = resolve_config(config_path)
    store = Store.open_readonly(resolve_db(config, db_path))
    try:
        sev = int(Severity.parse(min_severity)) if min_severity else None
        rows = iter_findings(store, since_ms=s, until_ms=u, category=category, min_severity=sev)
        if out_shape is not None:
            rule_of = _rule_lookup(config, out_shape)
            for f in rows:
                doc = serialize_finding(f, out_shape, rule_of(f["rule_id"]))
                click.echo(orjson.dumps(doc).decode())
            return
        table = [
            [
                str(Severity(f["severity"])),
                f["category"],
                f["rule_id"],
                _cut(f["client_ip"], 39),
                str(f["count"]),
                (iso_ms(f["first_seen_ms"]) or "")[:19],
                (iso_ms(f["last_seen_ms"]) or "")[:19],
                _cut(f["evidence"], 60),
            ]
            for f in rows
        ]
        if not table:
            click.echo("no findings")
            return
        _table(
            table,
            [
                "SEVERITY",
                "CATEGORY",
                "RULE",
                "CLIENT",
                "COUNT",
                "FIRST SEEN",
                "LAST SEEN",
                "EVIDENCE",
            ],
        )
    finally:
        store.close()


@cli.command("events")
@config_option
@db_option
@click.option("--since", default=None, help="ISO 8601 time or span (24h, 7d).")
@click.option("--until", default=None, help="ISO 8601 time or span.")
@click.option("--source", default=None, help="Only this source.")
@click.option("--client-ip", default=None, help="Only this client IP.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@format_option
def events_cmd(
    config_path: Path | None,
    db_path: Path | None,
    since: str | None,
    until: str | None,
    source: str | None,
    client_ip: str | None,
    limit: int | None,
    as_json: bool,
    shape: str | None,
) -> None:
    """List stored events (already redacted)."""
    s, u = _span(since, until)
    out_shape = _shape(as_json, shape)
    store = _open(config_path, db_path)
    try:
        rows = iter_events(
            store, since_ms=s, until_ms=u, source=source, client_ip=client_ip, limit=limit
        )
        if out_shape is not None:
            for e in rows:
                click.echo(orjson.dumps(serialize_event(e, out_shape)).decode())
            return
        for e in rows:
            q = f"?{e['query']}" if e["query"] else ""
            click.echo(
                f"{(iso_ms(e['ts_ms']) or '')[:23]} {e['source']} {e['client_ip'] or '-'} "
                f"{e['method'] or '-'} {e['scheme'] or '-'}://{e['host'] or '-'}{e['path']}{q} "
                f"{e['status'] or '-'} {e['bytes_out'] if e['bytes_out'] is not None else '-'}"
            )
    finally:
        store.close()


@cli.command("status")
@config_option
@db_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable (CONTRACT.md).")
def status_cmd(config_path: Path | None, db_path: Path | None, as_json: bool) -> None:
    """Per-source counters and store totals."""
    store = _open(config_path, db_path)
    try:
        sources = source_status(store)
        tot = totals(store)
        skipped = recent_journal(store, "skipped")
        gaps = recent_journal(store, READ_GAP)  # the newest first
        outputs = [
            {
                **{k: v for k, v in o.items() if not k.endswith("_ms")},
                "last_delivered_at": iso_ms(o["last_delivered_ms"]),
            }
            for o in output_status(store)
        ]
        chosen: dict[str, str] = {}  # source → what `--format auto` chose last (journal)
        for j in recent_journal(store, "format", limit=1000):
            chosen.setdefault(j["source"], j["detail"])
        if as_json:
            out = {
                "sources": [
                    {
                        **{k: v for k, v in s.items() if not k.endswith("_ms")},
                        "first_event_at": iso_ms(s["first_event_ms"]),
                        "last_event_at": iso_ms(s["last_event_ms"]),
                        "format_confidence": chosen.get(s["name"]),
                    }
                    for s in sources
                ],
                **tot,
                "skipped_files": [
                    {"at": iso_ms(j["at_ms"]), "detail": j["detail"]} for j in skipped
                ],
                "read_gaps": [
                    {"at": iso_ms(j["at_ms"]), "source": j["source"], "detail": j["detail"]}
                    for j in gaps
                ],
                "outputs": outputs,
            }
            click.echo(orjson.dumps(out).decode())
            return
        rows = [
            [
                s["name"],
                s["format"] or "-",
                str(s["lines_read"]),
                str(s["lines_parsed"]),
                str(s["lines_unparsed"]),
                str(s["lines_truncated"]),
                str(s["rotations"]),
                str(s["lag_bytes"]),
                (iso_ms(s["last_event_ms"]) or "-")[:19],
                _cut(s["last_error"], 40),
            ]
            for s in sources
        ]
        _table(
            rows,
            [
                "SOURCE",
                "FORMAT",
                "READ",
                "PARSED",
                "UNPARSED",
                "TRUNC",
                "ROT",
                "LAG",
                "LAST EVENT",
                "ERROR",
            ],
        )
        click.echo(f"\nevents: {tot['events']}  findings: {tot['findings']}")
        for j in skipped:
            click.echo(f"skipped: {j['detail']}")
        for j in gaps:
            at = (iso_ms(j["at_ms"]) or "-")[:19]
            click.echo(f"read gap {at} {j['source']}: {j['detail']}")
        for o in outputs:
            click.echo(
                f"output {o['name']}: delivered {o['delivered']}, pending {o['pending']},"
                f" dropped {o['dropped']}, failed attempts {o['failed']}"
                + (f", last error: {o['last_error']}" if o["last_error"] else "")
            )
        for s in sources:
            if s["name"] in chosen:
                click.echo(f"format of {s['name']}: {chosen[s['name']]}")
        for s in sources:
            if s["last_unparsed"]:
                click.echo(f"last unparsed line of {s['name']}: {s['last_unparsed']}")
    finally:
        store.close()
