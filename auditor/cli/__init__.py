"""The `log-auditor` command: a click group; each verb lives in its own module."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from auditor import __version__
from auditor.errors import AuditorError


class _Group(click.Group):
    """Turns every expected error into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AuditorError as exc:
            click.echo(f"log-auditor: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except BrokenPipeError:
            sys.exit(0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="log-auditor")
@click.option("-v", "--verbose", count=True, help="More log output on stderr.")
def cli(verbose: int) -> None:
    """Audit API access logs against PCI DSS v4.0.1, GDPR and OWASP API Top 10 (2023)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )


def _register() -> None:
    # Each verb module adds itself to `cli`; importing here keeps the group in one place.
    import importlib

    for name in ("scan", "query", "explain", "rules", "run", "report", "check_config"):
        try:
            importlib.import_module(f"auditor.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"auditor.cli.{name}":
                raise


def main() -> None:
    # Everything we write (store, keys, reports) is owner-only.
    os.umask(0o077)
    _register()
    cli(prog_name="log-auditor")
