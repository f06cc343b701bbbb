"""Rule files: every bundled example runs as a test, and ``log-auditor rules check`` names
file, rule and key for each mistake an operator can make (exit 2, no traceback).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.cli import _register, cli
from auditor.detect import Detector
from auditor.detectors.conditions import has_nested_quantifier
from auditor.detectors.examples import Decoders, run_example
from auditor.errors import RulesetError
from auditor.model import CATEGORIES
from auditor.rules import Example, Rule, RuleSet, bundled_rules_dir, load_rulesets

_register()
BUNDLED = bundled_rules_dir()
RULESET = load_rulesets([BUNDLED], {})
DECODERS = Decoders()


def _examples() -> Iterator[Any]:
    for rule in RULESET.rules:
        for ex in rule.examples:
            verdict = "fires" if ex.fires else "quiet"
            yield pytest.param(rule, ex, id=f"{rule.id}[{ex.index}]-{verdict}")


@pytest.mark.parametrize(("rule", "example"), list(_examples()))
def test_rule_example(rule: Rule, example: Example) -> None:
    ok, hits = run_example(RULESET, rule, example, DECODERS)
    want = "fire" if example.fires else "stay quiet"
    assert ok, f"{rule.file}: {rule.id} example[{example.index}] should {want}: {example.note}"
    for hit in hits:  # what a fired example produced is a well-formed hit of that rule
        assert hit.rule_id == rule.id
        assert hit.count >= 1


def test_every_bundled_rule_is_complete() -> None:
    assert len(RULESET.rules) >= 50
    for rule in RULESET.rules:
        assert rule.category in CATEGORIES, rule.id
        assert any(ex.fires for ex in rule.examples), f"{rule.id}: no example that fires"
        assert rule.description and rule.remediation and rule.controls, rule.id
        frameworks = {c.split(":")[0] for c in rule.controls}
        assert frameworks & {"PCI-DSS-4.0.1", "GDPR", "OWASP-API-2023"}, rule.id
        # A PCI DSS v4.0.1 requirement comes with its v3.2.1 alias where one exists.
        if any(c.startswith("PCI-DSS-4.0.1:") for c in rule.controls):
            assert any(c.startswith("PCI-DSS-3.2.1:") for c in rule.controls) or rule.id in {
                "pii.card-verification-in-url",
                "transport.weak-tls",
            }, f"{rule.id}: PCI DSS 4.0.1 control without a 3.2.1 alias"


def test_categories_cover_the_contract() -> None:
    covered = {r.category for r in RULESET.rules}
    assert covered == set(CATEGORIES)


# --- regexes -------------------------------------------------------------------------------


def _regexes(node: Any) -> Iterator[str]:
    """Every regex written in a rule file: ``regex``/``iregex`` values and allow-lists."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("regex", "iregex", "paths", "user_agents"):
                yield from [value] if isinstance(value, str) else value
            elif key != "example":
                yield from _regexes(value)
    elif isinstance(node, list):
        for item in node:
            yield from _regexes(item)


def test_no_bundled_regex_has_nested_quantifiers() -> None:
    found: list[str] = []
    for path in sorted(BUNDLED.glob("*.toml")):
        found.extend(_regexes(tomllib.loads(path.read_text())))
    engine = Detector(RULESET).patterns()  # what the gates compile from literals
    assert len(found) >= 3 and engine
    bad = [p for p in [*found, *engine] if has_nested_quantifier(p)]
    assert bad == []


@pytest.mark.parametrize(
    ("pattern", "nested"),
    [
        ("(a+)+", True),
        ("(?:\\d+\\s?)*x", True),
        ("(x|y*)+", True),
        ("(?:ab){2,}c", False),
        ("a{2,5}b+", False),
        ("[a-z]+@[a-z]+", False),
    ],
)
def test_nested_quantifier_check(pattern: str, nested: bool) -> None:
    assert has_nested_quantifier(pattern) is nested


# --- rules check ---------------------------------------------------------------------------

GOOD = """
[[rule]]
id = "local.{rid}"
title = "Export endpoint used"
severity = "{severity}"
category = "admin-access"
description = "Someone used the bulk export."
remediation = "Check who exported what."
controls = [{controls}]
where = {{ path = {{ regex = '{regex}' }} }}
{extra}
  [[rule.example]]
  line = '203.0.113.9 - - [10/Oct/2025:13:55:36 +0000] "GET /api/export HTTP/1.1" 200 53 "-" "curl/8"'
  fires = true
"""


def rule_text(
    rid: str = "export",
    severity: str = "medium",
    controls: str = "'GDPR:Art.32'",
    regex: str = "^/api/export",
    extra: str = "",
) -> str:
    return GOOD.format(rid=rid, severity=severity, controls=controls, regex=regex, extra=extra)


def check(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["rules", "check", *args], env={"LOG_AUDITOR_CONFIG": ""})
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), (
        res.exception
    )
    return res.exit_code, res.output


def test_check_bundled_by_default_passes() -> None:
    code, out = check()
    assert code == 0, out
    assert f"{len(RULESET.rules)} rules" in out and "0 failed" in out


def test_check_explicit_bundled_file_on_its_own() -> None:
    # Was a bug: the explicit file was loaded on top of the bundled set ("duplicate id").
    code, out = check(str(BUNDLED / "pii.toml"))
    assert code == 0, out
    assert "duplicate" not in out
    n = sum(1 for r in RULESET.rules if Path(r.file).name == "pii.toml")
    assert f"OK: {n} rules" in out


def test_check_operator_file_uses_bundled_predicates(tmp_path: Path) -> None:
    own = tmp_path / "own.toml"
    own.write_text(
        rule_text()
        .replace("path = { regex = '^/api/export' }", "auth_failure = true")
        .replace('"GET /api/export HTTP/1.1" 200', '"POST /api/login HTTP/1.1" 401')
    )
    code, out = check(str(own))
    assert code == 0, out
    assert "OK: 1 rules" in out


def test_check_operator_file_reusing_a_bundled_id(tmp_path: Path) -> None:
    own = tmp_path / "own.toml"
    own.write_text(rule_text().replace("local.export", "auth.bruteforce-burst"))
    code, out = check(str(own))
    assert code == 2
    assert str(own) in out and "'auth.bruteforce-burst'" in out
    assert "already a bundled rule" in out and "auth.toml" in out
    assert "rules.override" in out


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (rule_text(extra="colour = 'red'"), ["rule 'local.export'", "key 'colour'", "unknown key"]),
        (rule_text(regex="^/api/(export"), ["rule 'local.export'", "key 'where'", "regex"]),
        (rule_text(regex="^/(a+)+$"), ["rule 'local.export'", "key 'where'", "nested quantifiers"]),
        (rule_text(severity="urgent"), ["rule 'local.export'", "key 'severity'", "'urgent'"]),
        (rule_text(controls="'PCI:3'"), ["rule 'local.export'", "key 'controls'", "'PCI:3'"]),
        (rule_text(controls="'PCI-DSS-4.0.1:x.1'"), ["key 'controls'", "PCI-DSS-4.0.1:x.1"]),
        (rule_text(controls="'GDPR:Article5'"), ["key 'controls'", "GDPR:Article5"]),
        (rule_text().replace('category = "admin-access"', 'category = "spam"'), ["key 'category'"]),
        (rule_text().replace('title = "Export endpoint used"\n', ""), ["key 'title'", "required"]),
        (rule_text(extra="threshold = { count = 0, within = '1m' }"), ["key 'threshold.count'"]),
        (rule_text(extra="threshold = { count = 3 }"), ["key 'threshold.within'", "required"]),
        (rule_text(rid="Bad Id"), ["rule[0]", "key 'id'"]),
        (rule_text().replace("fires = true", "fires = 'yes'"), ["key 'example[0].fires'"]),
        ("[[rule]]\nid = 'x'\ntitle = 'broken", ["invalid TOML"]),
        (rule_text().replace("where = {", "detector = 'magic'\nparams = {}\nwhere0 = {"), ["key"]),
    ],
    ids=[
        "unknown-key",
        "bad-regex",
        "nested-quantifier",
        "bad-severity",
        "bad-control",
        "bad-pci-control",
        "bad-gdpr-control",
        "bad-category",
        "missing-title",
        "bad-threshold",
        "threshold-without-window",
        "bad-id",
        "bad-example",
        "bad-toml",
        "unknown-detector",
    ],
)
def test_check_names_file_rule_and_key(tmp_path: Path, text: str, needles: list[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    code, out = check(str(bad))
    assert code == 2, out
    assert str(bad) in out
    for needle in needles:
        assert needle in out, (needle, out)
    assert "Traceback" not in out


def test_check_duplicate_id_across_operator_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(rule_text())
    b.write_text(rule_text())
    code, out = check(str(a), str(b))
    assert code == 2
    assert f"{b}: rule 'local.export': key 'id': duplicate (also in {a})" in out


def test_check_reports_a_failing_example(tmp_path: Path) -> None:
    own = tmp_path / "own.toml"
    own.write_text(rule_text(regex="^/api/other"))
    code, out = check(str(own))
    assert code == 2
    assert f"{own}: rule 'local.export': example[0]: expected to fire, got no hit" in out
    assert "FAILED" in out


def test_check_in_a_subprocess_has_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(rule_text(regex="^/(x+)*$"))
    res = subprocess.run(
        [sys.executable, "-m", "auditor", "rules", "check", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "LOG_AUDITOR_CONFIG": ""},
    )
    assert res.returncode == 2
    assert "Traceback" not in res.stdout + res.stderr
    assert f"{bad}: rule 'local.export': key 'where'" in res.stdout + res.stderr


def test_check_uses_the_config(tmp_path: Path) -> None:
    own = tmp_path / "own.toml"
    own.write_text(rule_text())
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[rules]\npaths = ["{own}"]\ndisable = ["probe.long-url"]\n'
        '[rules.override."auth.bruteforce-burst"]\nseverity = "high"\n'
    )
    code, out = check("--config", str(cfg))
    assert code == 0, out
    assert f"{len(RULESET.rules)} rules" in out  # one more, one disabled
    cfg.write_text('[rules.override."no.such-rule"]\nseverity = "high"\n')
    code, out = check("--config", str(cfg))
    assert code == 2 and "no.such-rule" in out and "no such rule" in out


# --- loading ---------------------------------------------------------------------------


def test_load_errors_are_ruleset_errors(tmp_path: Path) -> None:
    with pytest.raises(RulesetError, match="not found"):
        load_rulesets([tmp_path / "missing.toml"])
    (tmp_path / "x.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(RulesetError, match="not UTF-8"):
        load_rulesets([tmp_path / "x.toml"])


def test_ruleset_identity_changes_with_content(tmp_path: Path) -> None:
    own = tmp_path / "own.toml"
    own.write_text(rule_text())
    a = load_rulesets([own])
    own.write_text(rule_text(severity="high"))
    b = load_rulesets([own])
    assert a.sha256 != b.sha256
    assert isinstance(a, RuleSet) and a.version.startswith("1 rules")


def test_rule_fingerprints_are_the_same_in_every_process() -> None:
    """Window state is restored only for rules whose fingerprint matches: a set in a
    rule's params must not make it differ between runs (string hashing is salted)."""
    import subprocess
    import sys

    code = (
        "from auditor.rules import load_rulesets, bundled_rules_dir\n"
        "print(' '.join(r.fingerprint for r in load_rulesets([bundled_rules_dir()], {}).rules))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
        for _ in range(3)
    }
    assert len(runs) == 1
