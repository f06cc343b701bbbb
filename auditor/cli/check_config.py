"""`log-auditor check-config`: validate the config and its rulesets, change nothing.

The unit's ``ExecStartPre`` runs it, so a bad config never starts the daemon: systemd
shows the one-line reason (file and key) in ``systemctl status`` and the journal. An
operator runs it by hand after an edit, before ``systemctl reload log-auditor``.

It creates no file: no store, no key, no report directory. Problems the daemon can live
with (a source path that does not exist yet, a store directory this user cannot write)
are warnings on stderr; the exit code is still 0.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import click

from auditor.cli import cli
from auditor.config import DEFAULT_CONFIG_PATH, Config, load_config
from auditor.errors import ConfigError, UsageError


def _engine() -> ModuleType | None:
    """The engine (formats and rules), or None while those modules are not built yet."""
    try:
        return importlib.import_module("auditor.engine")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("auditor."):
            return None
        raise


def _check_formats(config: Config, engine: ModuleType) -> None:
    for i, src in enumerate(config.sources):
        try:
            engine.format_spec(src)
        except UsageError as exc:
            raise ConfigError(f"{config.file}: key 'source[{i}].format': {exc}") from None


def _count_rules(config: Config, engine: ModuleType) -> int | None:
    ruleset = engine.load_config_rules(config)
    rules = getattr(ruleset, "rules", None)
    return len(rules) if rules is not None else None


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def warnings(config: Config) -> list[str]:
    """Conditions the daemon survives but an operator should hear about now."""
    out: list[str] = []
    for i, src in enumerate(config.sources):
        if any(ch in src.path for ch in "*?["):
            continue  # a glob may match nothing yet
        if not os.path.exists(src.path):
            out.append(f"source[{i}] {src.name!r}: {src.path} does not exist (yet)")
        elif not os.access(src.path, os.R_OK):
            out.append(f"source[{i}] {src.name!r}: {src.path} is not readable by this user")
    for key, path in (
        ("store.path", config.store.path.parent),
        ("report.output_dir", config.report.output_dir),
    ):
        base = _nearest_existing(path)
        if not os.access(base, os.W_OK | os.X_OK):
            out.append(f"{key}: {base} is not writable by this user")
    return out


@cli.command("check-config")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG_PATH,
    show_default=True,
    help="The config file to check.",
)
@click.option("--quiet", "-q", is_flag=True, help="No warnings; only errors.")
def check_config_cmd(config_path: Path, quiet: bool) -> None:
    """Validate the config file and the rulesets it loads (used by ExecStartPre).

    Prints `config OK: N sources, M rules` and exits 0, or prints one line naming the
    file and key (or rule) at fault and exits 2.
    """
    config = load_config(config_path)
    engine = _engine()
    n_rules: int | None = None
    if engine is not None:
        _check_formats(config, engine)
        n_rules = _count_rules(config, engine)
    if not quiet:
        for text in warnings(config):
            click.echo(f"log-auditor: warning: {config_path}: {text}", err=True)
    rules = "rules not checked" if n_rules is None else f"{n_rules} rules"
    click.echo(f"config OK: {len(config.sources)} sources, {rules}")
