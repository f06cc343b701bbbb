"""`log-auditor explain [--format NAME] [LINE]`: how one line parses, what was redacted,
and which rules it fires or counts toward (and why not, for the others).

Reads the line argument, or each line of stdin; lines read together share detector state,
so a burst pasted on stdin shows the threshold filling up. Redaction uses a random key
that is thrown away, so nothing printed can be linked to a stored digest.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
import orjson

from auditor.cli import cli
from auditor.cli.common import config_option, resolve_config
from auditor.config import Config
from auditor.detect import Detector, Verdict
from auditor.errors import UsageError
from auditor.formats import FORMAT_NAMES, FormatSpec, build_decoder, detection, is_directive
from auditor.model import ECS_NAMES, Event, Line
from auditor.redact import Redactor
from auditor.rules import bundled_rules_dir, load_rulesets

_SHOW = ("fires", "counts")


def _ruleset(config: Config) -> Detector:
    paths: list[Path] = [bundled_rules_dir()] if config.rules.bundled else []
    paths.extend(config.rules.paths)
    return Detector(load_rulesets(paths, config.rules.overrides))


def event_dict(ev: Event) -> dict[str, Any]:
    """The event's fields (already redacted), without the exposures, for display."""
    out = {k: v for k, v in asdict(ev).items() if k != "exposures"}
    out["timestamp"] = ev.timestamp.isoformat().replace("+00:00", "Z")
    return out


def verdict_dict(v: Verdict) -> dict[str, str]:
    return {"rule_id": v.rule_id, "category": v.category, "verdict": v.verdict, "reason": v.reason}


def _report(
    ev: Event, det: Detector, verbose: bool
) -> tuple[dict[str, Any], list[Verdict], list[dict[str, Any]]]:
    verdicts = det.explain(ev)
    hits = det.observe(ev)
    hit_rows = [
        {
            "rule_id": h.rule_id,
            "severity": str(h.severity),
            "key": h.key,
            "count": h.count,
            "evidence": h.evidence,
        }
        for h in hits
    ]
    shown = verdicts if verbose else [v for v in verdicts if v.verdict in _SHOW]
    return event_dict(ev), shown, hit_rows


def _print_text(
    n: int,
    ev: Event,
    fields: dict[str, Any],
    verdicts: list[Verdict],
    hits: list[dict[str, Any]],
    preds: Iterable[str],
) -> None:
    click.echo(f"line {n}: {ev.format}")
    for key, value in fields.items():
        if value is None or key in ("file", "offset"):
            continue
        label = ECS_NAMES.get(key, key)
        click.echo(f"  {label:28s} {value}")
    if ev.exposures:
        click.echo("  redacted:")
        for x in ev.exposures:
            where = f"{x.location}:{x.param}" if x.param else x.location
            detail = f" ({x.detail})" if x.detail else ""
            click.echo(f"    {x.pii_type:16s} {where:24s} {x.masked}{detail}")
    names = sorted(preds)
    if names:
        click.echo(f"  predicates: {', '.join(names)}")
    if not verdicts:
        click.echo("  rules: none fires or counts")
    for v in verdicts:
        click.echo(f"  {v.verdict:6s} {v.rule_id} [{v.category}]: {v.reason}")
    for h in hits:
        click.echo(
            f"  HIT    {h['rule_id']} {h['severity']} key={h['key']} count={h['count']}: {h['evidence']}"
        )


@cli.command("explain")
@config_option
@click.option("--format", "fmt", default="auto", help="Log format name (default: auto).")
@click.option("--source", default="explain", help="Source name to give the events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option(
    "--all", "verbose", is_flag=True, help="Also list the rules that do not match, with why."
)
@click.argument("line", required=False)
def explain_cmd(
    config_path: Path | None, fmt: str, source: str, as_json: bool, verbose: bool, line: str | None
) -> None:
    """Parse LINE (or each stdin line): the normalized event, the redactions, the rules."""
    if fmt != "auto" and fmt not in FORMAT_NAMES:
        raise UsageError(f"unknown format {fmt!r}; choose one of: auto, {', '.join(FORMAT_NAMES)}")
    texts = [line] if line is not None else [t.rstrip("\r\n") for t in sys.stdin]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise UsageError("explain: give a log line as argument or on stdin")
    name = fmt
    confidence: str | None = None
    if fmt == "auto":
        found = detection(texts[:50])
        name = found.name if found is not None else "auto"
        confidence = found.describe() if found is not None else "no known format fits"
        if not as_json:
            click.echo(f"format: {confidence}")
    decode = build_decoder(FormatSpec(name), Redactor(os.urandom(32)), source)
    det = _ruleset(resolve_config(config_path))
    unparsed = directives = 0
    for n, text in enumerate(texts, 1):
        ev = decode(Line(source, "stdin", 0, len(text) + 1, text))
        if ev is None and is_directive(text):
            directives += 1  # a W3C header line: read by the decoder, not an event
            continue
        if ev is None:
            unparsed += 1
            if as_json:
                miss = {"line": n, "parsed": False, "format": name}
                if confidence is not None:
                    miss["format_confidence"] = confidence
                click.echo(orjson.dumps(miss).decode())
            else:
                click.echo(f"line {n}: does not parse as {name}")
            continue
        preds = det.predicates_of(ev)
        fields, verdicts, hits = _report(ev, det, verbose)
        if as_json:
            obj = {
                "line": n,
                "parsed": True,
                "format": ev.format,
                **({"format_confidence": confidence} if confidence is not None else {}),
                "event": fields,
                "exposures": [asdict(x) | {"digest": None} for x in ev.exposures],
                "predicates": sorted(preds),
                "rules": [verdict_dict(v) for v in verdicts],
                "hits": hits,
            }
            click.echo(orjson.dumps(obj, default=str).decode())
        else:
            _print_text(n, ev, fields, verdicts, hits, preds)
    if unparsed == len(texts) - directives:
        sys.exit(1)
