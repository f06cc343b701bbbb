"""The `log-auditor` command: a click group; each verb lives in its own module."""

from __future__ import annotations

import os
import signal
import sys


def note_stop_signals() -> Callable[[], bool]:
    """Note SIGTERM/SIGINT instead of dying by them, and return whether one came.

    ``log-auditor run`` notes them from its first line until the daemon's event loop takes
    them over (and then asks): their default action would kill the process mid-start
    (exit -15, or a KeyboardInterrupt traceback) instead of the clean exit 0.
    """
    asked: list[int] = []

    def note(signum: int, frame: object) -> None:
        asked.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, note)
    return lambda: bool(asked)


def _is_run_command(argv: list[str], orig_argv: list[str]) -> bool:
    """Whether this process was started as `log-auditor [-v...] run ...` (the console script
    or ``python -m auditor``); the group's own options take no value.

    ``argv[1:]`` must be this process's own arguments (the tail of ``orig_argv``): a
    program that runs the console script again with its parent's ``sys.argv`` (as
    multiprocessing's spawn did with our decode workers, before they became plain ``-c``
    children) keeps the default actions.
    """
    args = argv[1:]
    if not argv or orig_argv[len(orig_argv) - len(args) :] != args:
        return False
    entry = os.path.basename(argv[0])
    is_ours = entry == "log-auditor" or (
        entry == "__main__.py" and os.path.basename(os.path.dirname(argv[0])) == "auditor"
    )
    verb = next((a for a in args if not a.startswith("-")), None)
    return is_ours and verb == "run"


# Before the imports below (click, then every command module: 0.3-0.7 s on a busy host),
# so that a SIGTERM at any moment of `run`'s start-up ends in exit 0. Other commands keep
# the default actions (Ctrl-C stops a scan at once).
early_stop_asked: Callable[[], bool] | None = (
    note_stop_signals() if _is_run_command(sys.argv, sys.orig_argv) else None
)

# After the handler above (see there).
import logging
from collections.abc import Callable
from typing import Any

import click

from auditor import __version__
from auditor.errors import AuditorError

# Each command's module, imported when the command is first asked for: `scan` does not
# import the daemon's modules (asyncio, outputs, report schedules: ~80 ms of start-up).
_MODULES = {
    "scan": "scan",
    "findings": "query",
    "events": "query",
    "status": "query",
    "explain": "explain",
    "rules": "rules",
    "run": "run",
    "report": "report",
    "check-config": "check_config",
}


class _Group(click.Group):
    """Turns every expected error into one line on stderr and its exit code; imports a
    command's module when the command is first asked for (``_MODULES``)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = _MODULES.get(cmd_name)
        if cmd_name not in self.commands and module is not None:
            _import_verb(module)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        _register()
        return super().list_commands(ctx)

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


def _import_verb(name: str) -> None:
    """Import the module of a verb: it adds its commands to `cli`."""
    import importlib

    try:
        importlib.import_module(f"auditor.cli.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"auditor.cli.{name}":
            raise


def _register() -> None:
    """Every command on `cli` (help lists them all); a run imports only its own."""
    for name in dict.fromkeys(_MODULES.values()):
        _import_verb(name)


def main() -> None:
    # Everything we write (store, keys, reports) is owner-only.
    os.umask(0o077)
    cli(prog_name="log-auditor")
