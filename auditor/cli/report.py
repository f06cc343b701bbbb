"""`log-auditor report`: write a PDF compliance report; `report verify DIR`: check the chain."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from auditor.cli import cli
from auditor.cli.common import config_option, parse_time, resolve_config, resolve_db
from auditor.errors import UsageError
from auditor.report.periods import last_full_period


def report_period(
    from_text: str | None, to_text: str | None, now: datetime
) -> tuple[datetime, datetime, str | None]:
    """``[start, end)`` and its kind: by default the last full UTC day.

    Only ``--from``: up to now. Only ``--to``: the day before it.
    """
    if from_text is None and to_text is None:
        start, end = last_full_period("day", now)
        return start, end, "day"
    end = parse_time(to_text, now=now, option="--to") if to_text else now
    start = (
        parse_time(from_text, now=now, option="--from") if from_text else end - timedelta(days=1)
    )
    if start >= end:
        raise UsageError(
            f"--from ({start:%Y-%m-%dT%H:%M:%SZ}) must be before --to ({end:%Y-%m-%dT%H:%M:%SZ})"
        )
    whole_day = end - start == timedelta(days=1) and start == start.replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return start, end, "day" if whole_day else None


def fleet_stores(paths: Sequence[Path]) -> tuple[Path, ...]:
    """The stores of a fleet report: each file given, and every ``*.db`` of each directory.

    A store named twice (also through a directory) is read once.
    """
    out: dict[Path, Path] = {}
    for p in paths:
        if p.is_dir():
            found = sorted(x for x in p.glob("*.db") if x.is_file())
            if not found:
                raise UsageError(f"--db {p}: no *.db store in this directory")
        else:
            found = [p]
        for x in found:
            out.setdefault(x.resolve(), x)
    return tuple(out.values())


@cli.group("report", invoke_without_command=True)
@config_option
@click.option(
    "--db",
    "db_paths",
    type=click.Path(path_type=Path),
    multiple=True,
    help="SQLite store (default: the config's [store] path, else ./log-auditor.db). "
    "Repeat it, or name a directory of *.db stores, for one fleet report over several "
    "hosts; those stores are only read.",
)
@click.option("--from", "from_text", default=None, help="Period start (ISO 8601, date, or 7d).")
@click.option("--to", "to_text", default=None, help="Period end, exclusive (default: now).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PDF file to write (default: the config's [report] output_dir, named by period).",
)
@click.option(
    "--pseudonymise/--no-pseudonymise",
    default=None,
    help="Client addresses as keyed hashes (default: the config's [report] pseudonymise).",
)
@click.option("--paper", type=click.Choice(["A4", "Letter"]), default=None, help="Paper size.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing on success.")
@click.pass_context
def report_cmd(
    ctx: click.Context,
    config_path: Path | None,
    db_paths: tuple[Path, ...],
    from_text: str | None,
    to_text: str | None,
    out: Path | None,
    pseudonymise: bool | None,
    paper: str | None,
    quiet: bool,
) -> None:
    """Write a PDF compliance report for a period (default: the last full day, UTC).

    The PDF's SHA-256 is written beside it and chained in the directory's manifest.jsonl;
    `log-auditor report verify DIR` checks the chain. With several --db stores (or a
    directory of them) it writes one fleet report: every host, its completeness, and the
    control matrix over all of them.
    """
    if ctx.invoked_subcommand is not None:
        return
    from auditor.report.produce import produce_fleet_report, produce_report

    config = resolve_config(config_path)
    fleet = len(db_paths) > 1 or any(p.is_dir() for p in db_paths)
    stores = fleet_stores(db_paths) if fleet else ()
    overrides: dict[str, object] = {}
    if pseudonymise is not None:
        overrides["pseudonymise"] = pseudonymise
    if paper is not None:
        overrides["paper"] = paper
    if overrides:
        config = dataclasses.replace(config, report=dataclasses.replace(config.report, **overrides))  # type: ignore[arg-type]
    now = datetime.now(UTC)
    start, end, kind = report_period(from_text, to_text, now)
    if fleet:
        produced = produce_fleet_report(config, stores, start, end, out=out, kind=kind, now=now)
    else:
        db = resolve_db(config, db_paths[0] if db_paths else None)
        produced = produce_report(config, db, start, end, out=out, kind=kind, now=now)
    if not quiet:
        click.echo(f"{produced.path}")
        if fleet:
            click.echo(f"  fleet of {len(stores)} store(s), each only read")
        click.echo(
            f"  report {produced.report_id}, {start:%Y-%m-%dT%H:%M:%SZ} to "
            f"{end:%Y-%m-%dT%H:%M:%SZ}, {produced.findings} findings, {produced.seconds:.1f} s"
        )
        click.echo(f"  sha256 {produced.sha256}")


@report_cmd.command("verify")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="Print only problems.")
def verify_cmd(directory: Path, quiet: bool) -> None:
    """Check every report in DIR against its .sha256 and the manifest's hash chain.

    Exit status 0 when everything matches, 1 when a report or manifest line is missing,
    modified or unlisted (each problem is printed).
    """
    from auditor.report.integrity import verify

    result = verify(directory)
    for problem in result.problems:
        click.echo(f"FAIL {problem}", err=True)
    if result.ok:
        if not quiet:
            click.echo(f"OK {result.checked} report(s) verified in {directory}")
            click.echo(f"chain head {result.head}")
        return
    click.echo(f"{len(result.problems)} problem(s) in {directory}", err=True)
    raise SystemExit(1)
