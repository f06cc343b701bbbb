"""`log-auditor rules check [PATH...]`: validate rule files and run every rule's examples.

Like ``fail2ban-regex`` for our rule files: the same code as the test suite. One line per
problem (``file: rule 'id': example[i]: expected to fire, got no hit``), then a summary;
exit 2 when anything is wrong, 0 when all passes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from auditor.cli import cli
from auditor.cli.common import config_option, resolve_config
from auditor.detectors.examples import check_examples
from auditor.errors import RulesetError
from auditor.rules import RuleSet, bundled_rules_dir, load_rulesets


@cli.group("rules")
def rules_group() -> None:
    """Rule files: validate them and run their examples."""


def _load(paths: tuple[Path, ...], config_path: Path | None) -> tuple[RuleSet, str]:
    if paths:
        # Explicit files are checked on their own: the bundled rulesets only lend their
        # predicates (an operator's rule may test ``auth_failure``) and reserve their ids.
        ruleset = load_rulesets(list(paths), {}, context=[bundled_rules_dir()])
        return ruleset, ", ".join(str(p) for p in paths)
    config = resolve_config(config_path)
    dirs: list[Path] = [bundled_rules_dir()] if config.rules.bundled else []
    dirs.extend(config.rules.paths)
    ruleset = load_rulesets(dirs, config.rules.overrides)
    return ruleset, ", ".join(str(p) for p in dirs)


@rules_group.command("check")
@config_option
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
def check_cmd(config_path: Path | None, paths: tuple[Path, ...]) -> None:
    """Validate rule files (default: bundled and configured) and run their examples."""
    try:
        ruleset, where = _load(paths, config_path)
    except RulesetError as exc:
        click.echo(str(exc), err=True)
        click.echo("rules check: 1 error (the files did not load)", err=True)
        sys.exit(2)
    problems = check_examples(ruleset)
    for problem in problems:
        click.echo(str(problem))
    n_examples = sum(len(r.examples) for r in ruleset.rules)
    without = [r.id for r in ruleset.rules if not any(e.fires for e in r.examples)]
    for rid in without:
        rule = ruleset.get(rid)
        assert rule is not None
        click.echo(f"{rule.file}: rule '{rid}': warning: no example that fires")
    status = "FAILED" if problems else "OK"
    click.echo(
        f"rules check {status}: {len(ruleset.rules)} rules, {n_examples} examples,"
        f" {len(problems)} failed ({where}; {ruleset.version})"
    )
    sys.exit(2 if problems else 0)
