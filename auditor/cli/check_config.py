"""`log-auditor check-config`: validate the config and its rulesets, change nothing.

The unit's ``ExecStartPre`` runs it, so a bad config never starts the daemon: systemd
shows the one-line reason (file and key) in ``systemctl status`` and the journal. An
operator runs it by hand after an edit, before ``systemctl reload log-auditor``.

It creates no file: no store, no key, no report directory. Problems the daemon can live
with (a source path that does not exist yet, a store directory this user cannot write)
are warnings on stderr; the exit code is still 0.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from auditor.cli import cli
from auditor.config import DEFAULT_CONFIG_PATH, Config, load_config
from auditor.errors import ConfigError
from auditor.formats import FormatSpec, build_decoder
from auditor.metrics import parse_listen
from auditor.normalize import PassThroughRedactor
from auditor.outputs.build import load_secrets
from auditor.report.schedule import validate_jobs
from auditor.rules import bundled_rules_dir, load_rulesets


def check_formats(config: Config) -> None:
    """Build every source's decoder once: unknown names, bad log_format strings, bad fields."""
    redactor = PassThroughRedactor()
    for i, src in enumerate(config.sources):
        spec = FormatSpec(
            src.format, log_format=src.log_format, fields=src.fields, scheme=src.scheme
        )
        try:
            build_decoder(spec, redactor, src.name)
        except ConfigError as exc:
            key = "log_format" if src.log_format else "fields" if src.fields else "format"
            raise ConfigError(f"{config.file}: key 'source[{i}].{key}': {exc}") from None


def check_metrics(config: Config) -> None:
    """The metrics endpoint must be a loopback HOST:PORT (the daemon refuses anything else)."""
    if config.daemon.metrics_listen is None:
        return
    try:
        parse_listen(config.daemon.metrics_listen)
    except ConfigError as exc:
        raise ConfigError(f"{config.file}: {exc}") from None


def check_schedules(config: Config) -> None:
    """Every report job's cron expression parses, and job names are unique."""
    try:
        validate_jobs(config)
    except ConfigError as exc:
        raise ConfigError(f"{config.file}: {exc}") from None


def count_rules(config: Config) -> int:
    """Load the rulesets the daemon would load, with the config's overrides."""
    paths: list[Path] = [bundled_rules_dir()] if config.rules.bundled else []
    paths.extend(config.rules.paths)
    return len(load_rulesets(paths, config.rules.overrides).rules)


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
    check_formats(config)
    check_metrics(config)
    check_schedules(config)
    # outputs: secret_file readable and not empty, headers_file good, ca_file loads
    secret_warnings: list[str] = []
    load_secrets(config, warn=secret_warnings.append)
    n_rules = count_rules(config)
    if not quiet:
        for text in [*warnings(config), *secret_warnings]:
            click.echo(f"log-auditor: warning: {config_path}: {text}", err=True)
    click.echo(f"config OK: {len(config.sources)} sources, {n_rules} rules")
