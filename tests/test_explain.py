"""`log-auditor explain`: how a line parses, what was redacted, which rules fire or count."""

from __future__ import annotations

import orjson
from click.testing import CliRunner

from auditor.cli import _register, cli

_register()
FAIL = '203.0.113.7 - - [10/Oct/2025:13:55:{s:02d} +0000] "POST /api/v1/login HTTP/1.1" 401 53 "-" "curl/8"'
CARD = '203.0.113.8 - - [10/Oct/2025:13:55:36 +0000] "GET /pay?card=4111111111111111 HTTP/1.1" 200 5 "-" "curl/8"'


def explain(*args: str, stdin: str | None = None) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["explain", *args], input=stdin, env={"LOG_AUDITOR_CONFIG": ""})
    return res.exit_code, res.output


def test_one_failure_counts_toward_the_burst() -> None:
    code, out = explain("--format", "nginx-combined", FAIL.format(s=0))
    assert code == 0, out
    assert "counts auth.bruteforce-burst [failed-auth-burst]" in out
    assert "(1 of 5" in out
    assert "predicates:" in out and "auth_failure" in out


def test_lines_on_stdin_share_state_until_the_rule_fires() -> None:
    lines = "\n".join(FAIL.format(s=i) for i in range(6)) + "\n"
    code, out = explain("--format", "nginx-combined", stdin=lines)
    assert code == 0, out
    assert "HIT    auth.bruteforce-burst" in out
    assert out.index("(5 of 5") < out.index("HIT    auth.bruteforce-burst")


def test_json_masks_the_secret_and_lists_verdicts() -> None:
    code, out = explain("--json", "--all", CARD)
    assert code == 0, out
    assert "4111111111111111" not in out
    obj = orjson.loads(out)
    assert obj["parsed"] is True and obj["format"]
    assert [x["pii_type"] for x in obj["exposures"]] == ["pan"]
    assert all(x["digest"] is None for x in obj["exposures"])
    rules = {r["rule_id"]: r["verdict"] for r in obj["rules"]}
    assert rules["pii.pan-in-url"] == "fires"
    assert rules["injection.sqli"] == "no"  # --all lists the rules that do not match too
    assert [h["rule_id"] for h in obj["hits"]] == ["pii.pan-in-url"]


def test_unparsed_line_and_bad_format() -> None:
    code, out = explain("--format", "nginx-combined", "this is not a log line")
    assert code == 1 and "does not parse" in out
    code, out = explain("--format", "no-such-format", FAIL.format(s=0))
    assert code == 2 and "unknown format" in out and "Traceback" not in out
