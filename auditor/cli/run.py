"""`log-auditor run`: the daemon (tail, store, detect, scheduled jobs) until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import click

from auditor.cli import cli
from auditor.config import DEFAULT_CONFIG_PATH, load_config
from auditor.sdnotify import setup_logging

log = logging.getLogger("auditor.daemon")


@cli.command("run")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file (default: $LOG_AUDITOR_CONFIG, else /etc/log-auditor/config.toml).",
)
@click.option(
    "--once",
    is_flag=True,
    help="Read what the sources hold now, commit it and exit (no watching).",
)
@click.pass_context
def run_cmd(ctx: click.Context, config_path: Path | None, once: bool) -> None:
    """Tail every configured source, store, detect and run scheduled jobs until SIGTERM.

    SIGHUP reloads the config and rules (a bad new config is refused, the old one kept).
    Under systemd (Type=notify) it reports readiness, watchdog pings and status.
    """
    from auditor.daemon import run

    path = config_path or Path(os.environ.get("LOG_AUDITOR_CONFIG") or DEFAULT_CONFIG_PATH)
    config = load_config(path)
    verbose = (ctx.parent.params.get("verbose") or 0) if ctx.parent else 0
    setup_logging(logging.DEBUG if verbose else logging.INFO)
    try:
        code = asyncio.run(run(config, config_path=path, once=once))
    except KeyboardInterrupt:
        code = 0
    except Exception as exc:
        if isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        from auditor.errors import AuditorError

        if isinstance(exc, AuditorError):
            raise exc from None
        log.critical("unexpected error, stopping", exc_info=exc)
        code = 1
    sys.exit(code)
