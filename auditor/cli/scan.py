"""`log-auditor scan`: one pass of the pipeline over files, then exit."""

from __future__ import annotations

import os
import re
from pathlib import Path

import click

from auditor.cli import cli
from auditor.cli.common import config_option, db_option, resolve_config, resolve_db
from auditor.config import Config
from auditor.decodeworker import PARALLEL_MIN_BYTES, workers_wanted
from auditor.engine import build_engine, check_format_name, format_spec
from auditor.formats import FormatSpec
from auditor.gctune import tune_for_ingest
from auditor.scanfiles import LazyStore, ParallelDecode, scan_paths
from auditor.store.writerlock import WriterLock

_ROTATED = re.compile(r"(\.gz|\.\d+|-\d{8}(\d{2})?)+$")


def plain_source_name(path: Path) -> str:
    """``access.log.2.gz`` and ``access.log-20261120`` belong to source ``access.log``."""
    return _ROTATED.sub("", path.name) or path.name


def _configured_source(config: Config, path: Path) -> str | None:
    real = os.path.realpath(path)
    for src in config.sources:
        base = os.path.realpath(src.path)
        if real == base or real.startswith(base.rstrip("/") + "/"):
            return src.name
        if Path(real).match(src.path) or plain_source_name(Path(real)) == Path(base).name:
            return src.name
    return None


@cli.command("scan")
@config_option
@db_option
@click.option("--format", "fmt", default=None, help="Log format name, or 'auto' (default).")
@click.option("--source", "source", default=None, help="Source name for every scanned file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.argument("paths", nargs=-1, required=True)
def scan_cmd(
    config_path: Path | None,
    db_path: Path | None,
    fmt: str | None,
    source: str | None,
    quiet: bool,
    as_json: bool,
    paths: tuple[str, ...],
) -> None:
    """Scan log files (plain or .gz) or directories once; re-scans add only new lines."""
    if fmt is not None:
        check_format_name(fmt)
    config = resolve_config(config_path)
    db = resolve_db(config, db_path)
    # One process reads logs into a store: a scan beside the daemon (or another scan) on
    # the same store would store the same lines twice. Taken before any position is read.
    with WriterLock(db):
        # A new store is opened by the first write, while the decode workers work.
        store = LazyStore.at(db)
        try:
            engine = build_engine(config, store.opened, db)
            names: dict[Path, str] = {}

            def source_for(path: Path) -> str:
                name = names.get(path)
                if name is not None:
                    return name
                name = source or _configured_source(config, path) or plain_source_name(path)
                names[path] = name
                if fmt is not None:
                    spec = FormatSpec(fmt)
                elif name in engine.specs:
                    spec = engine.specs[name]
                else:
                    spec = FormatSpec("auto")
                if name not in engine.decoders or fmt is not None:
                    engine.decoders.pop(name, None)
                    engine.add_source(name, spec)
                    store.register_source(name, str(path), spec.name)
                return name

            for src in config.sources:
                store.register_source(src.name, src.path, format_spec(src).name)
            pipeline = engine.pipeline()
            tune_for_ingest()
            summary = scan_paths(
                list(paths),
                store,
                pipeline,
                source_for,
                batch_lines=config.daemon.batch_lines * 4,
                max_line=config.daemon.max_line_bytes,
                quiet=quiet,
                parallel=ParallelDecode(
                    engine.redactor.key,
                    lambda name: engine.specs.get(name) or FormatSpec("auto"),
                    _parallel_min_bytes(),
                    workers_wanted(detecting=bool(engine.ruleset.rules)),
                ),
            )
            store.get()  # a new store nothing was written to exists with its tables, as before
        finally:
            store.close()
    if as_json:
        import orjson

        click.echo(
            orjson.dumps(
                {
                    "files": summary.files,
                    "lines": summary.lines,
                    "events": summary.events,
                    "unparsed": summary.unparsed,
                    "hits": summary.hits,
                    "skipped": [{"path": p, "reason": r} for p, r in summary.skipped],
                    "db": str(db),
                }
            ).decode()
        )
        return
    for p, reason in summary.skipped:
        click.echo(f"log-auditor: skipped {p}: {reason}", err=True)
    if not quiet:
        click.echo(
            f"scanned {summary.files} file(s): {summary.lines} new line(s), "
            f"{summary.events} event(s), {summary.unparsed} unparsed, "
            f"{summary.hits} detection hit(s) -> {db}",
            err=True,
        )
        if summary.pending_partial:
            click.echo(
                f"{summary.pending_partial} file(s) end in an incomplete line; it is read "
                "once its newline arrives",
                err=True,
            )


def _parallel_min_bytes() -> int:
    """Inputs this large are decoded in a second process; ``LOG_AUDITOR_PARALLEL_MIN_BYTES``
    changes the threshold (0: always, a huge number: never), for tests and benchmarks."""
    raw = os.environ.get("LOG_AUDITOR_PARALLEL_MIN_BYTES", "")
    return int(raw) if raw.isdigit() else PARALLEL_MIN_BYTES
