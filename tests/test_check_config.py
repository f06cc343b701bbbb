"""`log-auditor check-config`: the unit's ExecStartPre. OK line and exit 0, or one line and 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import auditor.cli.check_config  # noqa: F401  (registers the command)
from auditor.cli import cli

ROOT = Path(__file__).resolve().parent.parent
ONE_RULE = """
[[rule]]
id = "t.env-probe"
title = "dotenv probe"
severity = "low"
category = "scanner-probe"
description = "d"
remediation = "r"
controls = ["OWASP-API-2023:API8"]
where = { path = { suffix = "/.env" } }
"""


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["check-config", *args])


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_ok_line_counts_sources_and_rules(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("")
    rules = tmp_path / "rules.toml"
    rules.write_text(ONE_RULE)
    path = _config(
        tmp_path,
        f'[store]\npath = "{tmp_path}/audit.db"\n'
        f'[[source]]\nname = "api"\npath = "{log}"\nformat = "nginx-combined"\n'
        f'[[source]]\nname = "edge"\npath = "{tmp_path}/*.json"\nformat = "envoy"\n'
        f'[report]\noutput_dir = "{tmp_path}/reports"\n'
        f'[rules]\nbundled = false\npaths = ["{rules}"]\n',
    )
    result = _run("--config", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == "config OK: 2 sources, 1 rules\n"
    assert result.stdout.rstrip().endswith(" rules")
    assert result.stderr == ""
    # Nothing is created: no store, no key, no report directory.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["access.log", "config.toml", "rules.toml"]


def test_the_example_config_is_valid_with_the_bundled_rules() -> None:
    result = _run("--config", str(ROOT / "examples" / "config.toml"), "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("config OK: 1 sources, ")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[store]\npaht = "x"\n', "key 'store.paht': unknown key"),
        ("[retention]\nevents_days = 0\n", "key 'retention.events_days'"),
        ('[[source]]\nname = "a"\npath = "/x"\nformat = "bogus"\n', "key 'source[0].format'"),
        (
            '[[source]]\nname = "a"\npath = "/x"\nformat = "nginx-custom"\nlog_format = "$status"\n',
            "key 'source[0].log_format'",
        ),
        (
            '[[source]]\nname = "a"\npath = "/x"\nformat = "json"\nfields = { nonsense = "x" }\n',
            "key 'source[0].fields'",
        ),
        (
            '[rules]\nbundled = false\n[rules.override."no.such-rule"]\nseverity = "high"\n',
            "no.such-rule",
        ),
        ("not toml at all = = =\n", "invalid TOML"),
        ('[daemon]\nmetrics_listen = "0.0.0.0:9464"\n', "not a loopback address"),
        ('[report]\nschedule = "61 * * * *"\n', "report job 'default'"),
        (
            '[[report.job]]\nname = "x"\nschedule = "0 1 * * *"\n'
            + '[[report.job]]\nname = "x"\nschedule = "0 2 * * *"\n',
            "two jobs have this name",
        ),
    ],
)
def test_a_bad_config_is_one_line_and_exit_2(tmp_path: Path, text: str, needle: str) -> None:
    path = _config(tmp_path, text)
    result = _run("--config", str(path))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert str(path) in lines[0] or needle == "no.such-rule"
    assert needle in lines[0]


def test_a_bad_rule_file_is_exit_2(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nid = "x.y"\ntitle = "t"\nseverity = "urgent"\n')
    path = _config(tmp_path, f'[rules]\nbundled = false\npaths = ["{rules}"]\n')
    result = _run("--config", str(path))
    assert result.exit_code == 2
    assert "rules.toml" in result.stderr and "severity" in result.stderr


def test_missing_config_names_the_file(tmp_path: Path) -> None:
    result = _run("--config", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2
    assert "nope.toml: config file not found" in result.stderr


def test_warnings_go_to_stderr_and_keep_exit_0(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        f'[store]\npath = "{tmp_path}/audit.db"\n'
        f'[[source]]\nname = "api"\npath = "{tmp_path}/missing.log"\n'
        "[rules]\nbundled = false\n",
    )
    result = _run("--config", str(path))
    assert result.exit_code == 0
    assert "missing.log does not exist (yet)" in result.stderr
    quiet = _run("--config", str(path), "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == ""
